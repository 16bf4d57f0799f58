"""Config is strict: every bad value is a one-line error naming the key and the value."""

import copy
import typing

import pytest

from engine.config import ConfigError, load_config, parse_override, resolve

BASE = {"markets": [{"name": "BTC", "initial_price": 100.0, "sigma_annual": 0.5}]}


def _market(**kw):
    return {"markets": [{"name": "BTC", "initial_price": 100.0, "sigma_annual": 0.5, **kw}]}


@pytest.mark.parametrize(
    ("data", "overrides", "needle"),
    [
        ({**BASE, "stepz": 10}, (), "stepz is not a known key"),
        (_market(colour="red"), (), "markets.0.colour is not a known key"),
        (_market(tick_size=0.0), (), "markets.0.tick_size must be positive, was 0.0"),
        (_market(taker_fee=-0.001), (), "markets.0.taker_fee must be in [0, 0.1), was -0.001"),
        (_market(liquidation={"penalty": -0.01}), (), "markets.0.liquidation.penalty"),
        (
            _market(
                margin={
                    "model": "tiered",
                    "brackets": [
                        {"floor_usd": 0, "initial_margin": 0.05, "maintenance_margin": 0.05}
                    ],
                }
            ),
            (),
            "markets.0.margin.brackets.0.maintenance_margin must be below initial_margin, "
            "was 0.05 >= 0.05",
        ),
        (
            _market(
                margin={"model": "size_premium", "initial_margin": 0.05, "maintenance_margin": 0.1}
            ),
            (),
            "markets.0.margin.maintenance_margin",
        ),
        (_market(margin={"model": "nonsense"}), (), "markets.0.margin.model must be one of"),
        ({**BASE, "venue": "ftx"}, (), "venue must be one of"),
        (_market(venue="mango"), (), "markets.0.venue must be one of"),
        (BASE, ("steps=ten thousand",), "--set steps value does not parse"),
        (BASE, ("steps",), "--set must look like key=value"),
        (BASE, ("steps=-5",), "steps must be >= 1"),
        (BASE, ("markets.ETH.sigma_annual=1",), "no item named 'ETH'"),
        (BASE, ("markets.0.sigma_annual=fast",), "markets.0.sigma_annual must be a number"),
        ({**BASE, "seed": 1.5}, (), "seed must be an integer, was 1.5"),
        ({"markets": []}, (), "markets must hold at least one market"),
        (
            {**BASE, "shocks": [{"market": "ETH", "tick": 3, "log_return": -0.1}]},
            (),
            "shocks.0.market must name a market",
        ),
    ],
)
def test_invalid_config_names_key_and_value(data, overrides, needle):
    with pytest.raises(ConfigError) as err:
        resolve(data, overrides)
    msg = str(err.value)
    assert needle in msg
    assert "\n" not in msg


def test_overrides_by_index_and_name_and_bare_words():
    cfg = resolve(
        BASE,
        [
            "markets.BTC.sigma_annual=1.2",
            "markets.0.tick_size=0.5",
            "venue=dydx_v4",
            "accounts.count=10",
        ],
    )
    assert cfg.markets[0].sigma_annual == 1.2
    assert cfg.markets[0].tick_size == 0.5
    assert cfg.markets[0].venue == "dydx_v4"
    assert cfg.markets[0].margin.model == "oi_scaled"
    assert cfg.accounts.count == 10


def test_presets_fill_defaults_and_config_wins():
    cfg = resolve({**BASE, "venue": "drift_v2"})
    assert cfg.markets[0].margin.model == "size_premium"
    assert cfg.markets[0].loss_resolution == "socialized"
    cfg = resolve({**_market(loss_resolution="adl"), "venue": "drift_v2"})
    assert cfg.markets[0].loss_resolution == "adl"


def test_parse_override_values():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=dydx_v4") == (["a"], "dydx_v4")
    # A file path needs no TOML quotes; a mistyped number is still refused.
    assert parse_override("index.replay_file=data/crash_1m.csv.gz") == (
        ["index", "replay_file"],
        "data/crash_1m.csv.gz",
    )
    assert parse_override("a=./x.csv") == (["a"], "./x.csv")
    assert parse_override("a=/tmp/x.csv") == (["a"], "/tmp/x.csv")
    for bad in ("a=1.5.2", "a=-x", "a=x y"):
        with pytest.raises(ConfigError, match="value does not parse"):
            parse_override(bad)
    assert parse_override('a="x y"') == (["a"], "x y")


def test_config_hash_is_stable_and_sensitive():
    a = resolve(BASE)
    assert a.hash() == resolve(BASE).hash()
    assert a.hash() != resolve(BASE, ["seed=1"]).hash()


def test_load_config_reports_unreadable_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)


def test_shipped_configs_load():
    from pipelines.shipped import CONFIGS

    paths = sorted(p for p in CONFIGS.glob("**/*.toml") if p.name != "train.toml")
    assert {p.stem for p in paths} >= {"stress", "example", "cascade", "short_squeeze"}
    for p in paths:
        cfg = load_config(p)
        assert cfg.markets


# Every section whose fields declare a Range, where it sits in a config, and the rest of its
# table (what makes it valid apart from the field under test).
_TIERED = {
    "model": "tiered",
    "brackets": [{"floor_usd": 0, "initial_margin": 0.1, "maintenance_margin": 0.05}],
}
_SECTIONS = [
    ("", "SimConfig", {}),
    ("markets.0", "MarketConfig", {}),
    ("markets.0.liquidation", "LiquidationConfig", {}),
    ("markets.0.mark", "MarkConfig", {}),
    (
        "markets.0.margin",
        "OIScaledMargin",
        {"model": "oi_scaled", "initial_margin": 0.05, "maintenance_fraction": 0.6},
    ),
    (
        "markets.0.margin",
        "SizePremiumMargin",
        {"model": "size_premium", "initial_margin": 0.1, "maintenance_margin": 0.05},
    ),
    ("markets.0.margin", "VolScaledMargin", {"model": "vol_scaled"}),
    ("markets.0.margin.brackets.0", "Bracket", _TIERED["brackets"][0]),
    ("accounts", "AccountsConfig", {}),
    ("traders", "TradersConfig", {}),
    ("keepers", "KeepersConfig", {}),
    ("oracle", "OracleConfig", {}),
    ("congestion", "CongestionConfig", {}),
    ("circuit_breaker", "CircuitBreakerConfig", {}),
    ("history", "HistoryConfig", {}),
    ("policy", "PolicyConfig", {}),
    ("index", "IndexConfig", {}),
    ("vault", "VaultConfig", {}),
    ("shocks.0", "ShockConfig", {"market": "BTC", "tick": 5, "log_return": -0.1}),
]


def _place(data: dict, key: str, table: dict) -> None:
    """Put ``table`` at dotted ``key`` of ``data``: a margin table whole, any other merged into
    the section (list items by index; a bracket inside a tiered margin)."""
    if key == "markets.0.margin":
        data["markets"][0]["margin"] = copy.deepcopy(table)
        return
    node = data
    for part in key.split(".") if key else []:
        if part.isdigit():
            node = node[int(part)]
        elif part == "margin":
            node = node.setdefault("margin", copy.deepcopy(_TIERED))
        elif part == "shocks":
            node = node.setdefault("shocks", [{}])
        else:
            node = node.setdefault(part, {})
    node.update(copy.deepcopy(table))


def _ranged_fields():
    import engine.config as config
    from engine.config.ranges import declared_ranges

    for key, name, table in _SECTIONS:
        cls = getattr(config, name)
        hints = typing.get_type_hints(cls)
        for field, allowed in declared_ranges(cls):
            yield key, table, field, allowed, hints[field]


def test_every_section_with_declared_ranges_is_covered():
    import dataclasses
    import inspect

    import engine.config as config
    from engine.config.ranges import declared_ranges

    ranged = {
        name
        for name, cls in inspect.getmembers(config, inspect.isclass)
        if dataclasses.is_dataclass(cls) and declared_ranges(cls)
    }
    assert ranged == {name for _, name, _ in _SECTIONS}


@pytest.mark.parametrize(
    ("key", "table", "field", "allowed", "kind"),
    list(_ranged_fields()),
    ids=[f"{k or 'run'}.{f}" for k, _, f, _, _ in _ranged_fields()],
)
def test_a_value_outside_a_declared_range_names_key_range_and_value(
    key, table, field, allowed, kind
):
    """Each bound of each declared range, crossed by one, is refused through the TOML path
    with the key, what the field must be and the value."""
    outside = []
    if allowed.gt is not None:
        outside.append(allowed.gt)
    if allowed.ge is not None:
        outside.append(allowed.ge - 1)
    if allowed.lt is not None:
        outside.append(allowed.lt)
    if allowed.le is not None:
        outside.append(allowed.le + 1)
    assert outside
    for value in outside:
        data = copy.deepcopy(BASE)
        _place(data, key, {**table, field: value})
        full = f"{key}.{field}" if key else field
        value = kind(value)
        with pytest.raises(ConfigError) as e:
            resolve(data)
        assert str(e.value) == f"{full} must be {allowed.describe()}, was {value}"
