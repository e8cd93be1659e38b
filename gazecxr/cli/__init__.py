"""The ``gazecxr`` command (:mod:`gazecxr.cli.main`) and the flags all commands share (:mod:`gazecxr.cli.options`)."""
