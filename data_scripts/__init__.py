"""Data preparation for the course kit: ``rcnn-kit data ...`` (or ``python -m data_scripts ...``).

- :mod:`data_scripts.download`: resumable, md5-checked downloads from a list of mirrors;
- :mod:`data_scripts.sources`: where a VOC tar comes from (the user's ``--tar``, an earlier
  download, the mirrors), always checked by md5, never replaced;
- :mod:`data_scripts.extract`: tar extraction of files and folders only, inside its target,
  from a complete tar;
- :mod:`data_scripts.errors`: exit codes and the errors that say what a stopped run kept;
- :mod:`data_scripts.voc_json`: the course JSON files from VOC XML (VOC2007 and VOC2012 routes);
- :mod:`data_scripts.overfit_subset`: the small overfit subset shipped with the autograder, with a
  manifest, and its loader;
- :mod:`data_scripts.synthetic_set`: the synthetic set, written only into folders the command owns;
- :mod:`data_scripts.cli`: the ``data`` command and its sub-commands.
"""
