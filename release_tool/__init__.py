"""release_tool: turns the reference in solutions/ into what students receive.

- :mod:`release_tool.markers`: one reference module -> one student stub.
- :mod:`release_tool.notebook`: the source notebook -> the student Colab notebook.
- :mod:`release_tool.release`: writes or checks the whole ``assignments/`` tree.
- :mod:`release_tool.student_bundle`: the student zip in ``dist/``.
- :mod:`release_tool.cli`: the ``release``, ``bundle`` and ``submit`` subcommands.
"""
