"""The settings the session's one trained tiny model is trained with (see ``tests/conftest.py``).

The cached base model's key covers the training recipe and the data split, so a test that wants
the warm model (no training of its own) must use exactly these: as ``SuiteOptions`` fields
(:data:`TINY_SETTINGS`) or as plugin options for pytester runs (:data:`TINY_CLI_OPTIONS`).
"""

TINY_SETTINGS = {"train_epochs": 6, "eval_size": 120}

TINY_CLI_OPTIONS = ["--ptq-train-epochs", str(TINY_SETTINGS["train_epochs"]),
                    "--ptq-eval-size", str(TINY_SETTINGS["eval_size"])]
