"""Keys are written once (tui/keys.py): the README's table is generated from it and an operator's
``[keymap]`` in config.toml moves a key (driven by Pilot against real QEMU)."""

from __future__ import annotations

from pathlib import Path


from tui.keys import GRAPH_KEYS, MAIN_KEYS, markdown_table, readme_with_table
from tui.screens.graph import GraphScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen

from .uihelp import ChainApp, FIXED_CLOCK, Hub, PlanDialog, dialog, main, press, start_lab, until

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_keys_table_is_generated():
    text = README.read_text(encoding="utf-8")
    assert readme_with_table(text) == text, "README's keys table drifted: run python -m tui.keys --readme README.md"
    assert markdown_table() in text


def test_every_key_has_an_id_and_a_tooltip():
    ids = [b.id for b in MainScreen.BINDINGS] + [b.id for b in GraphScreen.BINDINGS]
    assert None not in ids and len(set(ids)) == len(ids)
    assert all(k.tooltip for k in MAIN_KEYS + GRAPH_KEYS)
    # the keys that exist: none lost in the move to one table
    assert {b.key for b in MainScreen.BINDINGS} == set("scmynfxpuwtdDgoalArq") | {"plus", "minus", "delete", "question_mark"}


async def test_remapped_key_from_config_toml(lab, tmp_path, monkeypatch):
    config = tmp_path / "config"
    (config / "chaintui").mkdir(parents=True)
    (config / "chaintui" / "config.toml").write_text('[keymap]\nmirror = "M"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    paths, ref, q = start_lab(lab)
    app = ChainApp([str(q.qmp)], hub=Hub(poll_interval=0.05), clock=FIXED_CLOCK)
    assert app.keymap == {"mirror": "M"}
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: main(app).selected_drive() is not None, what="a drive")
        await press(pilot, "m")  # the old key does nothing now
        assert app.screen is main(app)
        await press(pilot, "M")
        dlg = await dialog(pilot, app, PlanDialog)
        assert dlg.title_text.startswith("Mirror")
        await press(pilot, "escape")
        await until(pilot, lambda: app.screen is main(app), what="dialog closed")
        # the palette and the help name the new key
        titles = [c.title for c in app.get_system_commands(main(app))]
        assert "Mirror (M)" in titles
        await press(pilot, "question_mark")
        help_screen = await until(pilot, lambda: isinstance(app.screen, HelpScreen) and app.screen, what="help")
        assert "| `M` | **mirror**" in help_screen.query_one("#help-text").source  # type: ignore[attr-defined]
    q.stop()
