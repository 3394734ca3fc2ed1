"""``trackflow`` commands for AWS: the Lambda bundle and the deploy."""

from __future__ import annotations

import json

import click

from chalicelib.errors import TrackflowError
from trackflow.cli_common import current_settings

# `package` and `deploy` build for the same choice of Lambda CPU.
_ARCH_OPTION = click.option(
    "--arch",
    "architecture",
    type=click.Choice(["x86_64", "arm64"]),
    default="x86_64",
    show_default=True,
    help="Lambda architecture the native wheels are for.",
)


@click.command()
@_ARCH_OPTION
@click.option("--stage", default="prod", show_default=True, help="Chalice stage (.chalice/config.json).")
@click.option(
    "--out", type=click.Path(file_okay=False), default="build/package", show_default=True, help="Output folder."
)
def package(architecture: str, stage: str, out: str) -> None:
    """Build the Lambda bundle (deployment.zip, python3.12) and template (sam.json).

    Fails when a pinned requirement has no wheel for the runtime and
    architecture, or the zip holds native code Lambda cannot load.
    """
    from pathlib import Path

    from trackflow.dev import ROOT
    from trackflow.package import PackageError, build

    try:
        bundle = build(
            ROOT, Path(out), architecture=architecture, stage=stage, progress=lambda step: click.echo(f"- {step}")
        )
    except PackageError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{bundle.zip_path}: {bundle.zipped_bytes / 1e6:.1f} MB zipped, {bundle.unzipped_bytes / 1e6:.1f} MB unzipped "
        f"({architecture}, {len(bundle.requirements)} requirements checked); template {bundle.directory / 'sam.json'}"
    )


@click.command()
@click.option("--stage", default="prod", show_default=True, help="Chalice stage to package.")
@click.option("--stack-name", default="trackflow", show_default=True, help="CloudFormation stack.")
@click.option("--bucket", help="S3 bucket for the bundle and template (needed unless --bootstrap-only).")
@_ARCH_OPTION
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A stack parameter (repeatable), e.g. --param KafkaSource=msk. Kafka and ClickHouse ones default "
    "to this machine's KAFKA_* / CLICKHOUSE_* settings.",
)
@click.option("--project", "project_name", default="My site", show_default=True, help="First project's name.")
@click.option("--origin", "origins", multiple=True, help="A site allowed to send to the first project (repeatable).")
@click.option("--partitions", default=4, show_default=True, type=click.IntRange(min=1), help="Of the events topic.")
@click.option(
    "--script-src",
    default="/tracker.js",
    show_default=True,
    help="Where your pages load the tracker from (copy tracker/dist/tracker.js there).",
)
@click.option("--bootstrap-only", is_flag=True, help="Skip packaging and the stack: topics, migrations, project.")
@click.option("--skip-topics", is_flag=True, help="The topics exist already (made with `trackflow topics create`).")
@click.option(
    "--allow-dev-stage",
    is_flag=True,
    help="Say it twice: deploy --stage dev to AWS (a public development salt, bot traffic kept).",
)
def deploy(
    stage: str,
    stack_name: str,
    bucket: str | None,
    architecture: str,
    params: tuple[str, ...],
    project_name: str,
    origins: tuple[str, ...],
    partitions: int,
    script_src: str,
    bootstrap_only: bool,
    skip_topics: bool,
    allow_dev_stage: bool,
) -> None:
    """Deploy to AWS: package, upload, stack, topics, migrations, first project, snippet.

    Uses the AWS credentials and region boto3 finds (AWS_PROFILE, AWS_DEFAULT_REGION; not
    AWS_REGION), creates the --bucket there when it does not exist, and reaches Kafka and
    ClickHouse from this machine with the KAFKA_* and CLICKHOUSE_* settings. docs/deploy.md
    walks through it, with the IAM permissions the deployer needs.
    """
    import tempfile
    from pathlib import Path

    import boto3

    from trackflow import deploy as steps
    from trackflow.dev import ROOT
    from trackflow.package import PackageError, build

    overrides = dict(p.split("=", 1) for p in params if "=" in p)
    if len(overrides) != len(params):
        raise click.BadParameter("use KEY=VALUE", param_hint="--param")
    settings = current_settings()

    def say(step: str) -> None:
        click.echo(f"- {step}")

    if stage == "dev" and not allow_dev_stage:
        raise click.UsageError(
            "--stage dev deploys a development configuration (a public salt for visitor hashes, bot traffic kept); "
            "use --stage prod, or say --allow-dev-stage as well if you mean it"
        )
    session = boto3.session.Session()
    try:
        region = steps.aws_region(session)
        say(f"AWS region {region}")
        cloudformation = session.client("cloudformation")
        if not skip_topics:  # before the stack: nothing may produce to a topic that does not exist yet
            steps.create_topics(
                settings, partitions=partitions, failure_topic=steps.failure_topic(overrides), progress=say
            )
        if bootstrap_only:
            outputs = steps.stack_outputs(cloudformation, stack_name)
        else:
            if not bucket:
                raise click.UsageError("--bucket is needed to upload the bundle (or use --bootstrap-only)")
            creating = steps.is_new_stack(cloudformation, stack_name)
            password = settings.clickhouse.password
            if password and "ClickHousePasswordSecretArn" not in overrides:
                overrides["ClickHousePasswordSecretArn"] = steps.clickhouse_secret(
                    session.client("secretsmanager"),
                    stack_name,
                    password,
                    kms_key=overrides.get("SecretsKmsKeyArn"),
                    progress=say,
                )
            parameters = steps.stack_parameters(settings, overrides, creating=creating)
            s3 = session.client("s3")
            steps.ensure_bucket(s3, bucket, region, say)
            with tempfile.TemporaryDirectory() as scratch:
                say(f"packaging for {architecture}")
                bundle = build(ROOT, Path(scratch) / "package", architecture=architecture, stage=stage, progress=say)
                code = steps.upload(s3, bucket, stack_name, bundle.zip_path.read_bytes(), ".zip", say)
                body = steps.template_for(bundle.directory / "sam.json", bucket, code)
                declared = list(json.loads(body)["Parameters"])
                key = steps.upload(s3, bucket, stack_name, body.encode(), ".json", say)
            outputs = steps.deploy_stack(
                cloudformation,
                stack_name,
                template_url=f"{s3.meta.endpoint_url}/{bucket}/{key}",
                parameters=parameters,
                declared=declared,
                progress=say,
            )
        deployed = steps.bootstrap(
            settings,
            outputs,
            dynamodb=session.resource("dynamodb"),
            project_name=project_name,
            origins=origins,
            script_src=script_src,
            progress=say,
        )
    except (steps.DeployError, PackageError, TrackflowError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    for name, value in sorted(deployed.outputs.items()):
        click.echo(f"{name}: {value}")
    click.echo(f"\nProject {deployed.project.name} ({deployed.project.project_id})")
    click.echo(f"  API key:    {deployed.project.api_keys[0]}")
    click.echo(f"  read token: {deployed.project.read_token}  (the dashboard and stats API; keep it secret)")
    click.echo("\nPaste into your pages, just before </head>:\n")
    click.echo(deployed.snippet)
