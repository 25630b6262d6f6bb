"""The test bed's pure parts: where the Debian mirror comes from and when an image is rebuilt."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmfleet import pipstage, testbed

ROOT = Path(__file__).resolve().parent.parent

DEB822 = """\
# the main archive
Types: deb deb-src
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "debian.sources").write_text(DEB822)
    assert testbed.debian_mirror(tmp_path, release="bookworm") == "http://mirror.example/debian"


def test_mirror_skips_disabled_and_source_only_entries(tmp_path: Path) -> None:
    (tmp_path / "a.sources").write_text(
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n"
    )
    (tmp_path / "b.list").write_text("deb [signed-by=/k.gpg] http://on.example/debian/ bookworm main\n")
    assert testbed.debian_mirror(tmp_path, release="bookworm") == "http://on.example/debian"


def test_mirror_ignores_update_suites_and_comments(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list"
    sources.write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb http://sec.example/debian-security bookworm-security main\n"
        "deb http://plain.example/debian bookworm main\n"
    )
    assert testbed.debian_mirror(sources, release="bookworm") == "http://plain.example/debian"
    # Without a release name, the first suite without a dash is the plain release.
    assert testbed.debian_mirror(sources, release=None) == "http://plain.example/debian"


def test_mirror_missing_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.list").write_text("deb http://sec.example/debian-security bookworm-security main\n")
    with pytest.raises(LookupError, match="bookworm"):
        testbed.debian_mirror(tmp_path, release="bookworm")


def test_host_release_reads_codename(tmp_path: Path) -> None:
    os_release = tmp_path / "os-release"
    os_release.write_text('NAME="Debian GNU/Linux"\nVERSION_CODENAME=bookworm\n')
    assert testbed.host_release(os_release) == "bookworm"
    assert testbed.host_release(tmp_path / "missing") is None


def test_inputs_hash_tracks_every_input() -> None:
    base = dict(suite="bookworm", packages=["a", "b"], mirror="http://m", ca_certs={"x.crt": b"1"})
    digest = testbed.inputs_hash(**base)
    assert testbed.inputs_hash(**{**base, "packages": ["b", "a"]}) == digest  # order does not matter
    for change in ({"suite": "trixie"}, {"packages": ["a"]}, {"mirror": "http://n"},
                   {"ca_certs": {"x.crt": b"2"}}, {"ca_certs": {}}):
        assert testbed.inputs_hash(**{**base, **change}) != digest, change
    assert testbed.inputs_hash(**base, recipe="other") != digest


def test_test_env_names_the_project_containers_conf(tmp_path: Path) -> None:
    env = testbed.test_env(tmp_path)
    assert env["CONTAINERS_CONF"] == str(tmp_path / "testbed" / "containers.conf")


def test_project_containers_conf_sets_runc_and_ulimits() -> None:
    import tomllib

    conf = tomllib.loads(testbed.containers_conf(Path(__file__).resolve().parents[1]).read_text())
    assert conf["engine"]["runtime"] == "runc"
    assert "nofile=4096:4096" in conf["containers"]["default_ulimits"]


def test_host_pip_settings_are_staged_for_the_containers(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-1+cpu-cp311-none-any.whl").write_bytes(b"wheel")
    index = tmp_path / "index" / "simple"
    index.mkdir(parents=True)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=2.14.1\n")
    out = tmp_path / "out"
    settings = {
        "find-links": str(wheels),
        "extra-index-url": f"file://{index} https://mirror.example/simple",
        "constraint": str(constraints),
        "cert": "/host/only/ca.pem",
        "default-timeout": "180",
        "cache-dir": "/host/cache",
    }
    rewritten = pipstage.stage_host_pip(settings, out)
    mount = pipstage.PIP_MOUNT
    assert rewritten["find-links"] == f"{mount}/dirs/1"
    assert rewritten["extra-index-url"] == f"file://{mount}/dirs/2/simple https://mirror.example/simple"
    assert rewritten["constraint"] == f"{mount}/files/3-constraints.txt"
    assert rewritten["cert"] == pipstage.CONTAINER_CA_BUNDLE
    assert "cache-dir" not in rewritten
    assert (out / "dirs/1/torch-1+cpu-cp311-none-any.whl").read_bytes() == b"wheel"
    assert (out / "files/3-constraints.txt").read_text() == "torch<=2.14.1\n"
    conf = (out / "pip.conf").read_text()
    assert f"find-links = {mount}/dirs/1" in conf and "default-timeout = 180" in conf
    import tomllib

    uv = tomllib.loads((out / "uv.toml").read_text())
    assert uv == {"system-certs": True, "find-links": [f"{mount}/dirs/1"], "index-strategy": "unsafe-best-match",
                  "extra-index-url": [f"file://{mount}/dirs/2/simple", "https://mirror.example/simple"]}


def test_staging_again_keeps_the_mounted_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "a.whl").write_bytes(b"a")
    out = tmp_path / "out"
    pipstage.stage_host_pip({"find-links": str(wheels)}, out)
    inode = out.stat().st_ino
    pipstage.stage_host_pip({"find-links": str(wheels)}, out)
    assert out.stat().st_ino == inode, "an unchanged configuration must not replace the directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "wheels"], "no staging leftovers"
    pipstage.stage_host_pip({"find-links": str(wheels), "default-timeout": "60"}, out)
    assert "default-timeout = 60" in (out / "pip.conf").read_text()


def test_scenarios_name_the_suites_to_build(tmp_path: Path) -> None:
    (tmp_path / ".config/molecule").mkdir(parents=True)
    (tmp_path / ".config/molecule/config.yml").write_text(
        "platforms:\n  - name: instance\n    image: localhost/llmfleet-testbed:bookworm\n")
    for name, images in {"plain": None, "two": ["bookworm", "trixie"], "other": ["registry.example/x:1"]}.items():
        (tmp_path / "molecule" / name).mkdir(parents=True)
        platforms = "".join(f"  - name: h{i}\n    image: {image if ':' in image and '/' in image else 'localhost/llmfleet-testbed:' + image}\n"
                            for i, image in enumerate(images or []))
        (tmp_path / "molecule" / name / "molecule.yml").write_text(f"platforms:\n{platforms}" if images else "scenario: {}\n")
    assert testbed.scenario_suites(tmp_path, ["plain"]) == ["bookworm"]
    assert testbed.scenario_suites(tmp_path, ["plain", "two"]) == ["bookworm", "trixie"]
    assert testbed.scenario_suites(tmp_path, ["other"]) == []
    # The project's own: the workstation scenario's trixie host, everything else bookworm.
    root = Path(__file__).resolve().parents[1]
    assert testbed.scenario_suites(root, ["ollama"]) == ["bookworm"]
    assert testbed.scenario_suites(root, ["workstation"]) == ["bookworm", "trixie"]


@pytest.mark.parametrize("config", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("*/molecule/*/molecule.yml"))
                         + sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("molecule/*/molecule.yml")))
def test_each_molecule_config_survives_molecules_interpolation(config: str) -> None:
    """Molecule substitutes environment variables in molecule.yml, comments included, before it reads
    it: a lone `$` followed by anything but a name or `$` stops the scenario before it starts."""
    from molecule.interpolation import Interpolator, TemplateWithDefaults

    text = (ROOT / config).read_text()
    interpolated = Interpolator(TemplateWithDefaults, {})
    assert yaml.safe_load(interpolated.interpolate(text)) is not None


def test_scenario_networks_are_the_extra_opts_networks(tmp_path: Path) -> None:
    """Networks a platform joins with --network= in extra_opts are the test bed's (internal) ones; the
    driver's own `network:` key is not, and a name two scenarios share is made once."""
    for name, body in {
        "one": "platforms:\n  - name: a\n    extra_opts: ['--hostname=a', '--network=inner']\n"
               "  - name: b\n    network: outer\n",
        "two": "platforms:\n  - name: c\n    extra_opts: ['--network=inner']\n  - name: d\n    extra_opts: ['--network=other']\n",
        "none": "scenario: {}\n",
    }.items():
        (tmp_path / "molecule" / name).mkdir(parents=True)
        (tmp_path / "molecule" / name / "molecule.yml").write_text(body)
    assert testbed.scenario_networks(tmp_path, ["one"]) == ["inner"]
    assert testbed.scenario_networks(tmp_path, ["one", "two", "none"]) == ["inner", "other"]
    assert testbed.scenario_networks(tmp_path, ["none"]) == []
    # The project's own: the fleet scenario's network has no route out.
    assert testbed.scenario_networks(Path(__file__).resolve().parents[1], ["fleet"]) == ["llmfleet-fleet"]
