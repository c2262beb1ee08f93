import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

validate(config, workflow.source_path("../schemas/config.schema.yaml"))

# Jobs run `python -m onmerge.cli` with the package from this checkout's src/. Without --sdm conda, `python` is the
# interpreter running Snakemake (so `.venv/bin/snakemake` works without an activated venv); with it, the rule's
# environment. A shell prefix rather than a rule param: moving the checkout must not rerun finished jobs.
_uses_conda = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
_interpreter_dir = "" if _uses_conda else Path(sys.executable).parent
shell.prefix(
    "set -euo pipefail; "
    + (f'export PATH="{_interpreter_dir}:$PATH"; ' if _interpreter_dir else "")
    + f'export PYTHONPATH="{Path(workflow.basedir) / "src"}'
    + '${{PYTHONPATH:+:$PYTHONPATH}}"; '  # Snakemake formats the prefix: doubled braces reach the shell single
)
