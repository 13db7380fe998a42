"""`sam build` and `sam deploy`'s local steps on the template, in the SAM CLI's own Python, without compiling.

Run by the SAM CLI's venv (make test does): .venv-sam/bin/python infra/check_sam_build.py [--template PATH]

1. Runs the real `sam build` command (SAM CLI's click entry point, with infra/samconfig.toml) with one thing
   replaced: the cargo-lambda workflow records the command it would run and writes a stub bootstrap instead
   of compiling. Everything else is SAM CLI's own code: reading samconfig (language_extensions,
   parameter_overrides), expanding AWS::LanguageExtensions (Fn::ForEach) with the parameters, the SAM
   translation, the intrinsic resolver (Resources and Outputs), choosing the build workflow from
   Metadata.BuildMethod, and writing .aws-sam/build/template.yaml.
2. Does what `sam deploy` does locally with the built template and the deploy parameters from samconfig:
   packages it (PackageContext, with the S3 upload stubbed) and loads the packaged template
   (SamLocalStackProvider.get_stacks, as DeployContext.run does before it calls CloudFormation).

Exits non-zero, with SAM CLI's error, if any step fails or the functions are not the expected three.
"""

import argparse
import os
import sys
import tempfile
import traceback
from pathlib import Path

os.environ["SAM_CLI_TELEMETRY"] = "0"  # before samcli is imported

from aws_lambda_builders.workflows.rust_cargo.workflow import RustCargoLambdaWorkflow  # noqa: E402
from samcli.cli.main import cli  # noqa: E402
from samcli.commands._utils.options import CfnParameterOverridesType  # noqa: E402
from samcli.commands.package.package_context import PackageContext  # noqa: E402
from samcli.lib.config.samconfig import SamConfig  # noqa: E402
from samcli.lib.package.s3_uploader import S3Uploader  # noqa: E402
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider  # noqa: E402
from samcli.yamlhelper import yaml_parse  # noqa: E402

INFRA = Path(__file__).resolve().parent
REPO = INFRA.parent
SAMCONFIG = INFRA / "samconfig.toml"

# logical ID -> the cargo binary (Metadata.BuildProperties.Binary) it is built from
FUNCTIONS = {"IngestFunction": "ingest", "DecideFunction": "decide", "ReconcileFunction": "reconcile"}

FAILURES = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        FAILURES.append(what)
    return ok


# ---------------------------------------------------------------------------------------------- no compiling
COMPILES = {}  # function logical ID -> (cargo command, working directory, architecture)


def record_instead_of_compiling(workflow):
    """Stands in for RustCargoLambdaWorkflow.run: the build command it would run, and a stub bootstrap."""
    for name, binary in workflow.binaries.items():  # what PATH resolution would have filled in
        binary.binary_path = name
    command = workflow.actions[0].build_command()
    artifacts = Path(workflow.artifacts_dir)  # <build dir>/<function logical ID>
    COMPILES[artifacts.name] = (command, workflow.source_dir, workflow.architecture)
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "bootstrap").write_text(f"stub for {artifacts.name}: check_sam_build.py does not compile\n")


RustCargoLambdaWorkflow.run = record_instead_of_compiling


def fake_upload(self, file_name, remote_path):
    return f"s3://gatekeeper-check-bucket/{remote_path}"


S3Uploader.upload = fake_upload
S3Uploader.file_exists = lambda self, remote_path: False


# ---------------------------------------------------------------------------------------------- steps
def samconfig_enables_language_extensions():
    config = SamConfig(str(SAMCONFIG.parent), SAMCONFIG.name)
    for cmd in ("build", "package", "deploy"):
        params = config.get_all([cmd], "parameters")
        check(params.get("language_extensions") is True, f"samconfig: language_extensions = true for sam {cmd}")
    for cmd in ("build", "deploy"):
        overrides = config.get_all([cmd], "parameters").get("parameter_overrides", "")
        check("ManagedServiceIds=" in overrides, f"samconfig: sam {cmd} gets ManagedServiceIds in parameter_overrides")
    deploy_overrides = config.get_all(["deploy"], "parameters").get("parameter_overrides", "")
    return CfnParameterOverridesType().convert(deploy_overrides, None, None) if deploy_overrides else {}


def sam_build(template, build_dir):
    args = [
        "build",
        "--config-file", str(SAMCONFIG),
        "--template-file", str(template),
        "--base-dir", str(INFRA),  # CodeUri is relative to infra/, where the template lives
        "--build-dir", str(build_dir),
        "--cache-dir", str(build_dir.parent / "cache"),
    ]  # fmt: skip
    print("sam " + " ".join(args))
    try:
        cli.main(args=args, prog_name="sam", standalone_mode=False)
    except SystemExit as e:
        return check(e.code in (0, None), f"sam build exits 0 (exit {e.code})")
    except Exception:
        traceback.print_exc()
        return check(False, "sam build loads the template (see the traceback above)")
    return check(True, "sam build loads, expands, translates and resolves the template")


def built_functions_are_the_three(build_dir):
    built = build_dir / "template.yaml"
    if not check(built.is_file(), f"sam build wrote {built.name}"):
        return None
    check(set(COMPILES) == set(FUNCTIONS), f"sam build ran the cargo-lambda workflow for {sorted(FUNCTIONS)} (ran: {sorted(COMPILES)})")
    for logical_id, binary in FUNCTIONS.items():
        if logical_id not in COMPILES:
            continue
        command, source_dir, architecture = COMPILES[logical_id]
        expected = ["cargo", "lambda", "build", "--release", "--arm64", "--bin", binary]
        check(command == expected, f"{logical_id}: `{' '.join(command)}` (want `{' '.join(expected)}`)")
        check(Path(source_dir).resolve() == REPO, f"{logical_id}: built in the workspace root ({source_dir})")
        check(architecture == "arm64", f"{logical_id}: arm64")
        check((build_dir / logical_id / "bootstrap").is_file(), f"{logical_id}: artifact {logical_id}/bootstrap")
    resources = yaml_parse(built.read_text())["Resources"]
    for logical_id, binary in FUNCTIONS.items():
        fn = resources.get(logical_id, {})
        meta = fn.get("Metadata", {})
        check(
            meta.get("BuildMethod") == "rust-cargolambda" and meta.get("BuildProperties", {}).get("Binary") == binary,
            f"{logical_id}: Metadata BuildMethod rust-cargolambda, Binary {binary}",
        )
        check(fn.get("Properties", {}).get("CodeUri") == logical_id, f"{logical_id}: built template's CodeUri is its artifact")
    return built


def deploy_steps(built, parameter_overrides, work):
    """sam deploy: package the built template (S3 stubbed), then load the packaged template as DeployContext does."""
    packaged = work / "packaged.yaml"
    try:
        with PackageContext(
            template_file=str(built), s3_bucket="gatekeeper-check-bucket", image_repository=None,
            image_repositories=None, s3_prefix="gatekeeper", kms_key_id=None, output_template_file=str(packaged),
            use_json=False, force_upload=True, no_progressbar=True, metadata=None, on_deploy=True,
            region="us-east-1", profile=None, parameter_overrides=parameter_overrides, language_extensions=True,
        ) as package_context:  # fmt: skip
            package_context.run()
    except Exception:
        traceback.print_exc()
        return check(False, "sam deploy's package step (see the traceback above)")
    packaged_template = yaml_parse(packaged.read_text())
    resources = packaged_template["Resources"]
    transforms = packaged_template.get("Transform")
    check(
        transforms == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]
        and any(k.startswith("Fn::ForEach::") for k in resources),
        "packaged template keeps Fn::ForEach and both transforms (CloudFormation expands with the deploy parameters)",
    )
    for logical_id in FUNCTIONS:
        code = resources.get(logical_id, {}).get("Properties", {}).get("CodeUri", "")
        check(str(code).startswith("s3://gatekeeper-check-bucket/"), f"packaged {logical_id}: CodeUri {code}")
    try:
        stacks, _ = SamLocalStackProvider.get_stacks(
            str(packaged), parameter_overrides=parameter_overrides, language_extensions_enabled=True
        )
        resources = stacks[0].resources
        names = {k for k, r in resources.items() if r.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")}
    except Exception:
        traceback.print_exc()
        return check(False, "sam deploy loads the packaged template (see the traceback above)")
    return check(names == set(FUNCTIONS), f"sam deploy loads the packaged template: functions {sorted(names)}")


def two_services_expand(template):
    """A list of services expands to one connection notification each, and to no policy each."""
    overrides = {"ManagedServiceIds": "vpce-svc-0123456789abcdef0,vpce-svc-0fedcba9"}
    try:
        stacks, _ = SamLocalStackProvider.get_stacks(
            str(template), parameter_overrides=overrides, language_extensions_enabled=True
        )
    except Exception:
        traceback.print_exc()
        return check(False, "two managed services expand (see the traceback above)")
    types = [r.get("Type") for r in stacks[0].resources.values()]
    check(types.count("AWS::EC2::VPCEndpointConnectionNotification") == 2, "two services: two connection notifications")
    # Accept/reject and the allowed principals are one statement each, over every service (IAM's quota on
    # a role's inline policies together): no policy per service.
    policies = [k for k, r in stacks[0].resources.items() if r.get("Type") == "AWS::IAM::RolePolicy"]
    check(not policies, f"two services: no policy per service ({policies})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--template", type=Path, default=INFRA / "template.yaml")
    template = ap.parse_args().template.resolve()
    deploy_overrides = samconfig_enables_language_extensions()
    with tempfile.TemporaryDirectory(prefix="check-sam-build-") as tmp:
        work = Path(tmp)
        build_dir = work / "build"
        if sam_build(template, build_dir):
            built = built_functions_are_the_three(build_dir)
            if built:
                deploy_steps(built, deploy_overrides, work)
        two_services_expand(template)
    if FAILURES:
        print(f"\ncheck_sam_build: {len(FAILURES)} failed: {template}", file=sys.stderr)
        return 1
    print(f"\ncheck_sam_build: {template} builds and deploys (locally) as sam does")
    return 0


if __name__ == "__main__":
    sys.exit(main())
