"""Data preparation for the course kit: ``rcnn-kit data ...`` (or ``python -m data_scripts ...``).

- :mod:`data_scripts.download`: resumable, md5-checked downloads from a list of mirrors;
- :mod:`data_scripts.extract`: tar extraction that never writes outside its target;
- :mod:`data_scripts.voc_json`: the course JSON files from VOC XML (VOC2007 and VOC2012 routes);
- :mod:`data_scripts.overfit_subset`: the small overfit subset shipped with the autograder, with a manifest;
- :mod:`data_scripts.cli`: the ``data`` command and its sub-commands.
"""
