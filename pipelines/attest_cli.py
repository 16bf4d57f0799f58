"""`predliq attest` and `predliq verify`: thin glue over attest/."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from attest.toolchain import ARITIES, BATCH_SIZES
from engine.errors import PredliqError


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class _AttestGroup(click.Group):
    """``predliq attest SOURCE ...`` attests; ``predliq attest setup ...`` makes the setup."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["book", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_AttestGroup, context_settings={"help_option_names": ["-h", "--help"]})
def attest() -> None:
    """Prove a book's health in zero knowledge without revealing any account.

    \b
    predliq attest setup [--power P]                   once: local powers of tau (cached)
    predliq attest PARTITION [--at BLOCK] --out DIR     a simulated book at a block
    predliq attest --accounts FILE --out DIR            a venue's accounts file
    (--ptau FILE: a public ceremony's powers of tau instead of the local setup)
    """


@attest.command("setup")
@click.option(
    "--power",
    type=click.IntRange(8, 22),
    default=14,
    show_default=True,
    help="Powers of tau for circuits of up to 2^POWER constraints (14: batches of 16; 16: of "
    "64). Takes about 7 min at 14 and 30 min at 16 on 2 cores.",
)
def setup(power: int) -> None:
    """Make and cache a local powers-of-tau file with a random contribution of its own.

    A production deployment needs a public multi-party ceremony file instead: pass it to
    `predliq attest --ptau FILE`."""
    from attest import toolchain

    try:
        existing = toolchain.local_ptau(power, make=False)
        if existing is None:
            click.echo(f"making powers of tau 2^{power} (local, one contribution)...")
        ptau = toolchain.local_ptau(power)
    except PredliqError as e:
        _fail(str(e))
    assert ptau is not None
    click.echo(f"powers of tau 2^{power}: {ptau.path}")
    click.echo(
        "note: made locally with one contribution; whoever made it could forge proofs. "
        "A deployment uses a public ceremony file (--ptau)."
    )


@attest.command("book")
@click.argument("partition", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--at",
    "block",
    default=None,
    metavar="BLOCK|worst",
    help="A sampled block, or worst: the block where the accounts below maintenance lack the "
    "most margin (default: the last sampled block).",
)
@click.option(
    "--accounts",
    "accounts_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A venue's accounts file instead of a partition: Parquet or CSV with account, equity, "
    "maintenance_margin, initial_margin and notional_<market> in quote units.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Attestation folder (public).",
)
@click.option(
    "--private",
    "private_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the salts and the per-account openings (default OUT.private).",
)
@click.option(
    "--batch-size",
    type=click.Choice([str(n) for n in BATCH_SIZES]),
    default="16",
    show_default=True,
    help="Accounts per batch proof.",
)
@click.option(
    "--arity",
    type=click.Choice([str(n) for n in ARITIES]),
    default="16",
    show_default=True,
    help="Children per aggregate proof.",
)
@click.option(
    "--ptau",
    "ptau_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A prepared powers-of-tau file (e.g. a public ceremony's) instead of the local one.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, help="Local Dask processes proving batches."
)
@click.option("--scheduler", default=None, metavar="ADDRESS", help="An existing Dask scheduler.")
@click.option("--overwrite", is_flag=True, help="Replace existing attestation and private folders.")
def book(
    partition: Path | None,
    block: str | None,
    accounts_file: Path | None,
    out: Path,
    private_dir: Path | None,
    batch_size: str,
    arity: str,
    ptau_file: Path | None,
    workers: int,
    scheduler: str | None,
    overwrite: bool,
) -> None:
    """Attest a book: commit every account and prove the totals and the health statement."""
    from attest import toolchain
    from attest.book import from_file, from_partition
    from attest.build import attest as run_attest
    from pipelines.cluster import map_tasks

    private = private_dir or out.with_name(out.name + ".private")
    try:
        if (partition is None) == (accounts_file is None):
            _fail("give a PARTITION or --accounts FILE (one of them)")
        if accounts_file is not None and block is not None:
            _fail("--at applies to a partition, not to --accounts")
        at: int | str | None = block
        if block is not None and block != "worst":
            if not block.isdigit():
                _fail(f"--at must be a block number or worst, was {block!r}")
            at = int(block)
        if private.absolute() == out.absolute():
            _fail("--private must differ from --out")
        for folder in (out, private):
            if folder.exists() and not overwrite:
                _fail(f"{folder} exists; pass --overwrite to replace it")
        the_book = from_partition(partition, at) if partition else from_file(accounts_file)
        if ptau_file is not None:
            ptau = toolchain.supplied_ptau(ptau_file)
        else:
            ptau = toolchain.largest_local_ptau()

        def mapper(fn, items):
            return map_tasks(fn, items, workers, scheduler)

        run_attest(
            the_book,
            out,
            private,
            ptau,
            batch_size=int(batch_size),
            arity=int(arity),
            mapper=mapper,
            workers=workers if scheduler is None else max(workers, 2),
            log=click.echo,
        )
    except PredliqError as e:
        _fail(str(e))
    click.echo((out / "summary.md").read_text().split("\n\n")[1])


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--account", type=int, default=None, help="Check this account's inclusion (with --opening)."
)
@click.option(
    "--opening",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The account's opening file, from the venue.",
)
def verify(folder: Path, account: int | None, opening: Path | None) -> None:
    """Check an attestation (every proof, the tree, the totals) and print one verdict line;
    with --account and --opening, also check that account's inclusion with its values.
    Exit code 1 when the attestation or the opening does not check, 2 for unusable input."""
    from attest.verify import VerifyError, verdict, verify_account
    from attest.verify import verify as run_verify

    if (account is None) != (opening is None):
        _fail("--account and --opening go together")
    if not (folder / "attestation.json").is_file():
        _fail(f"{folder} holds no attestation.json")
    if opening is not None and not opening.is_file():
        _fail(f"opening file {opening} does not exist")
    try:
        if account is None:
            line = verdict(run_verify(folder))
        else:
            line = verify_account(folder, account, opening)
    except VerifyError as e:
        click.echo(f"REJECTED: {e}")
        sys.exit(1)
    except PredliqError as e:
        _fail(str(e))
    click.echo(line)
