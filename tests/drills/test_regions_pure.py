"""Region drills without starting a region: configuration, scenario rules, the fault table."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from drills.faults import FAULTS
from drills.region import RegionsConfig, RegionSpec
from drills.region_faults import REGION_FAULTS
from drills.scenario import FAULT_KINDS, Scenario

pytestmark = pytest.mark.unit


def _spec(name: str, port: int) -> RegionSpec:
    return RegionSpec(name=name, root=Path(f"/tmp/r/{name}"), http_port=port,
                      grpc_port=port + 1, control_port=port + 2)


def _config(mode: str = "async") -> RegionsConfig:
    return RegionsConfig(regions=(_spec("primary", 7000), _spec("standby", 7100)), mode=mode,
                         artifact=Path("a"), public_key=Path("k.pub"), store_key=Path("s.key"))


def test_config_round_trips_and_names_peers() -> None:
    cfg = _config("sync")
    assert RegionsConfig.model_validate_json(cfg.model_dump_json()) == cfg
    assert cfg.peer("primary").name == "standby" and cfg.peer("standby").name == "primary"
    assert cfg.region("standby").store_dir == Path("/tmp/r/standby/stores/primary")
    with pytest.raises(KeyError, match="no region 'west'"):
        cfg.region("west")


def test_config_refuses_one_region_bad_names_and_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        RegionsConfig(regions=(_spec("primary", 7000),), artifact=Path("a"),
                      public_key=Path("k"), store_key=Path("s"))
    with pytest.raises(ValidationError):
        _spec("Bad Name", 7000)
    with pytest.raises(ValidationError):
        RegionsConfig.model_validate({**_config().model_dump(mode="json"), "extra": 1})


def _scenario(cluster: dict[str, object], method: list[dict[str, object]],
              via: str = "frontdoor") -> Scenario:
    return Scenario.model_validate({
        "title": "t", "cluster": cluster,
        "load": {"rate_rps": 10, "duration_s": 30, "via": via}, "method": method,
        "steady_state_hypothesis": {"slos": [{"kind": "success_ratio", "min": 0.9}]}})


def test_region_faults_need_two_regions_and_only_region_faults() -> None:
    kill = {"fault": "kill-region", "mode": "primary", "at_s": 5}
    assert _scenario({"workers": 1, "regions": 2}, [kill]).cluster.regions == 2
    with pytest.raises(ValidationError, match="need two regions"):
        _scenario({"workers": 1}, [kill])
    with pytest.raises(ValidationError, match="region faults only"):
        _scenario({"workers": 1, "regions": 2}, [kill, {"fault": "kill-node", "at_s": 6}])
    with pytest.raises(ValidationError, match="global entry"):
        _scenario({"workers": 1, "regions": 2}, [kill], via="replicas")
    with pytest.raises(ValidationError, match="not valid for kill-region"):
        _scenario({"workers": 1, "regions": 2}, [{**kill, "mode": "west"}])


def test_every_fault_kind_has_exactly_one_injector() -> None:
    from drills.release_faults import RELEASE_FAULTS

    groups = [set(FAULTS), set(RELEASE_FAULTS), set(REGION_FAULTS), {"overload"}]
    assert sum(len(g) for g in groups) == len(set().union(*groups)) == len(FAULT_KINDS)
    assert set().union(*groups) == set(FAULT_KINDS)


def test_region_ports_stay_out_of_the_ephemeral_range() -> None:
    from drills.regions import stable_port

    low, _high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
                  .split())
    ports = [stable_port() for _ in range(30)]
    assert len(set(ports)) == len(ports)
    assert all(20000 <= p < min(32000, low) for p in ports), ports
