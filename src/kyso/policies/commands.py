"""``kyso policy check|list|show``: parse, one library call, render."""

from __future__ import annotations

from pathlib import Path

import click

from kyso.cliutil import App, emit_fields, emit_json, emit_table, pass_app
from kyso.context import Kyso
from kyso.errors import AuditError, CANotInitialisedError
from kyso.policies.check import PolicyReport, evaluate, record_policy_check
from kyso.policies.checks import CHECKS
from kyso.policies.facts import gather_facts
from kyso.policies.loader import load_levels
from kyso.policies.models import LANGS, REGIMES, Level, Localised, Requirement, Status

_STATUS_MARK = {Status.PASS: "✔", Status.FAIL: "✘", Status.PARTIAL: "◐", Status.EVIDENCE: "?"}
_YES_NO = {True: Localised("có", "yes"), False: Localised("không", "no")}

lang_option = click.option("--lang", type=click.Choice(LANGS), default="vi", show_default=True,
                           help="Language of titles, details and labels.")


def register(root: click.Group) -> None:
    root.add_command(policy)


@click.group()
def policy() -> None:
    """Security levels of information systems: list them, show a requirement, check this
    deployment against a level.

    \b
    Regimes:
      current  Law 116/2025/QH15, Decree 331/2026/NĐ-CP, Decree 333/2026/NĐ-CP, TCVN 14423:2026
               (from 01/07/2026; systems in operation comply by 01/07/2027)
      legacy   Decree 85/2016/NĐ-CP, Circular 12/2022/TT-BTTTT, TCVN 11930:2017
    """


# --- kyso policy check -----------------------------------------------------------------------

@policy.command("check", epilog="""\b
Examples:
  kyso policy check --level 3
  kyso policy check --level 3 --regime legacy --evidence /srv/audit/evidence
  kyso policy check --format json --lang en > level3.json

\b
Statuses: Đạt (met), Chưa đạt (not met), Một phần (partly met), Cần bằng chứng (evidence
needed: put the named file in the --evidence folder). Exit code 1 when a mandatory
requirement is not met (Chưa đạt), else 0; the last line sums the report up.""")
@click.option("--level", type=click.IntRange(1, 5), default=None,
              help="Security level 1-5 (default: [security] level of config.toml, 3).")
@click.option("--regime", type=click.Choice(REGIMES), default=None,
              help="current or legacy (default: [security] regime, current).")
@click.option("--evidence", "evidence_dir",
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of evidence files named by the requirements (name or name.<ext>).")
@click.option("--format", "fmt", type=click.Choice(["table", "text", "json"]), default=None,
              help="Output format (default table).")
@lang_option
@pass_app
def policy_check(app: App, level: int | None, regime: str | None, evidence_dir: Path | None,
                 fmt: str | None, lang: str) -> None:
    """Check this deployment against a security level, requirement by requirement."""
    settings = app.settings
    catalogue = load_levels()  # a broken level file is refused before anything is opened
    kyso = _open(app)
    facts = gather_facts(settings, kyso.clock if kyso else None, kyso)
    report = evaluate(level or settings.security.level, regime or settings.security.regime,
                      facts, evidence_dir, catalogue=catalogue)
    audit_error = None
    if kyso is not None:
        try:
            record_policy_check(kyso, report)
        except AuditError as exc:  # a damaged log must not hide the report that shows it
            audit_error = str(exc)
    if (fmt or ("json" if app.json else "table")) == "json":
        emit_json(report.to_dict(lang))
    else:
        _render_report(report, lang)
    if audit_error is not None:
        click.echo(f"warning: the policy check was not recorded: {audit_error}", err=True)
        raise SystemExit(1)
    if report.exit_code:
        # Not ctx.exit(): kyso.cli.main runs click with standalone_mode=False, which turns
        # ctx.exit(1) into a return value that main() does not pass on.
        raise SystemExit(report.exit_code)


def _open(app: App) -> Kyso | None:
    """The home's context; None for a home without a CA database (nothing is created)."""
    try:
        return app.kyso
    except CANotInitialisedError:
        return None


def _render_report(report: PolicyReport, lang: str) -> None:
    en = lang == "en"
    columns = ["id", "requirement", "mandatory", "status", "detail", "source"] if en else \
        ["mã", "yêu cầu", "bắt buộc", "kết quả", "chi tiết", "nguồn"]
    rows = [[i.requirement.id, i.requirement.title.get(lang),
             _YES_NO[i.requirement.mandatory].get(lang),
             f"{_STATUS_MARK[i.status]} {i.status.label(lang)}", i.detail.get(lang),
             i.requirement.source] for i in report.items]
    emit_table(columns, rows, title=report.level.title.get(lang))
    notes = [n.get(lang) for n in report.notes]
    if report.evidence_dir is None and any(i.status is Status.EVIDENCE for i in report.items):
        notes.append("give the evidence files with --evidence DIR (name or name.<ext>)" if en else
                     "nộp các tệp bằng chứng bằng --evidence THƯ_MỤC (tên hoặc tên.<đuôi>)")
    for note in notes:
        click.echo(("note: " if en else "lưu ý: ") + note)
    click.echo(report.summary_line(lang))


# --- kyso policy list / show -----------------------------------------------------------------

@policy.command("list", epilog="""\b
Examples:
  kyso policy list
  kyso policy list --regime current --level 3
  kyso policy list --level 4 --lang en --format json""")
@click.option("--regime", type=click.Choice(REGIMES), default=None, help="Only this regime.")
@click.option("--level", type=click.IntRange(1, 5), default=None,
              help="List the requirements of this level instead of the levels.")
@lang_option
@pass_app
def policy_list(app: App, regime: str | None, level: int | None, lang: str) -> None:
    """List the levels, or the requirements of one level."""
    catalogue = load_levels()
    levels = [catalogue.levels[n] for n in catalogue.names()
              if (regime is None or catalogue.levels[n].regime == regime)
              and (level is None or catalogue.levels[n].level == level)]
    if level is None:
        if app.json:
            emit_json([_level_summary(lv, lang) for lv in levels])
            return
        emit_table(["name", "requirements", "mandatory", "automatic", "title"], [
            [lv.name, len(lv.requirements), sum(r.mandatory for r in lv.requirements),
             sum(r.automatic for r in lv.requirements), lv.title.get(lang)] for lv in levels])
        return
    if app.json:
        emit_json([{"level": lv.name, **r.to_dict(lang)} for lv in levels for r in lv.requirements])
        return
    emit_table(["level", "id", "mandatory", "check / evidence", "title", "source"], [
        [lv.name, r.id, _YES_NO[r.mandatory].get(lang), _how(r), r.title.get(lang), r.source]
        for lv in levels for r in lv.requirements])


def _level_summary(level: Level, lang: str) -> dict[str, object]:
    d = level.to_dict(lang)
    reqs = level.requirements
    d["requirements"] = len(reqs)
    d["mandatory"] = sum(r.mandatory for r in reqs)
    d["automatic"] = sum(r.automatic for r in reqs)
    return d


def _how(req: Requirement) -> str:
    parts = []
    if req.check:
        params = ", ".join(f"{k}={'/'.join(v) if isinstance(v, tuple) else v}"
                           for k, v in req.params.items())
        parts.append(f"check {req.check}" + (f" ({params})" if params else ""))
    if req.evidence:
        parts.append(f"evidence {req.evidence}")
    return "; ".join(parts)


@policy.command("show", epilog="""\b
Examples:
  kyso policy show CUR-L3-LOG-01
  kyso policy show LEG-L2-AUTH-03 --lang en""")
@click.argument("requirement_id", metavar="ID")
@lang_option
@pass_app
def policy_show(app: App, requirement_id: str, lang: str) -> None:
    """Show one requirement: its text in both languages, source, check or evidence, levels."""
    req, levels = load_levels().find(requirement_id)
    check = CHECKS[req.check] if req.check else None
    if app.json:
        emit_json({**req.to_dict(), "levels": [lv.name for lv in levels],
                   "check_description": check.description.to_dict() if check else None})
        return
    desc = req.evidence_description
    emit_fields([
        ("tiếng Việt", f"{req.title.vi}: {req.text.vi}"),
        ("English", f"{req.title.en}: {req.text.en}"),
        ("source", req.source),
        ("mandatory", _YES_NO[req.mandatory].get(lang)),
        ("met by", _how(req)),
        ("the check", check.description.get(lang) if check else ""),
        ("evidence", f"{req.evidence}: {desc.get(lang)}" if req.evidence and desc else ""),
        ("replaces", req.replaces or ""),
        ("defined in", req.defined_in),
        ("levels", ", ".join(lv.name for lv in levels)),
    ], title=req.id)
