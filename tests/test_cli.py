"""The nvshim command: forwarding to the runtime, the create path, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import (
    FakeRuntime,
    make_bundle_dir,
    minimal_spec,
    write_config,
    write_plugin_distribution,
)

PASS_THROUGH = [
    ["start", "ctr"],
    ["state", "ctr"],
    ["kill", "ctr", "KILL"],
    ["delete", "--force", "ctr"],
    ["exec", "--process", "/tmp/p.json", "ctr"],
    ["update", "--resources", "-", "ctr"],
    ["ps", "--format", "json", "ctr"],
    ["features"],
    ["pause", "ctr"],
    ["resume", "ctr"],
    ["checkpoint", "ctr"],
    ["restore", "ctr"],
    ["events", "ctr"],
    ["list"],
    ["spec"],
    ["frobnicate", "--x"],
    ["delete", "create"],
    ["--root", "/run/x", "--log", "/dev/null", "--log-format", "json", "state", "run"],
]


def run_shim(
    exe: str, args: list[str], env: dict[str, str], **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([exe, *args], env=env, capture_output=True, timeout=60, **kwargs)


@pytest.mark.parametrize("args", PASS_THROUGH, ids=lambda a: " ".join(a))
def test_pass_through_forwards_argv_unchanged(
    nvshim_exe: str, shim_env: dict[str, str], fake_runtime: FakeRuntime, args: list[str]
) -> None:
    result = run_shim(nvshim_exe, args, shim_env)
    assert result.returncode == 0, result.stderr
    (call,) = fake_runtime.calls()
    assert call["argv"] == [str(fake_runtime.path), *args]
    assert result.stdout == b""


def test_stdin_env_cwd_fds_and_exit_status_reach_the_runtime(
    nvshim_exe: str, shim_env: dict[str, str], fake_runtime: FakeRuntime, tmp_path: Path
) -> None:
    env = dict(shim_env, FAKE_RUNTIME_EXIT="7", SOMETHING="kept")
    r3, w3 = os.pipe()
    r4, w4 = os.pipe()
    os.write(w3, b"fd three")
    os.write(w4, b"fd four")
    os.close(w3)
    os.close(w4)
    for fd in (r3, r4):
        os.set_inheritable(fd, True)
    script = (
        f"import os, sys; os.dup2({r3}, 3); os.dup2({r4}, 4); os.execv(sys.argv[1], sys.argv[1:])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, nvshim_exe, "update", "--resources", "-", "ctr"],
        env=env,
        input=b'{"memory": {"limit": 1000}}',
        capture_output=True,
        cwd=tmp_path,
        pass_fds=(r3, r4),
        timeout=60,
    )
    os.close(r3)
    os.close(r4)
    assert result.returncode == 7
    (call,) = fake_runtime.calls()
    assert call["stdin"] == '{"memory": {"limit": 1000}}'
    assert call["cwd"] == str(tmp_path)
    assert call["env"]["SOMETHING"] == "kept"
    assert call["fds"] == {"3": "fd three", "4": "fd four"}


def test_create_modifies_then_execs(
    nvshim_exe: str, shim_env: dict[str, str], fake_runtime: FakeRuntime, tmp_path: Path
) -> None:
    plugin = write_plugin_distribution(
        tmp_path / "site",
        "nvshim-marker",
        {
            "nvshim_marker": """
                from nvshim import Modifier, hookimpl

                def mark(spec, context):
                    spec.set_env("MARKED", context.mode)

                @hookimpl
                def nvshim_modifiers():
                    return [Modifier("marker", mark, order=90)]
            """
        },
        {"marker": "nvshim_marker"},
    )
    bundle = make_bundle_dir(tmp_path / "bundle")
    env = dict(shim_env, PYTHONPATH=str(plugin))
    args = ["--root", "/run/r", "create", "--bundle", str(bundle), "--pid-file", "/p", "ctr"]
    result = run_shim(nvshim_exe, args, env)
    assert result.returncode == 0, result.stderr
    (call,) = fake_runtime.calls()
    assert call["argv"][1:] == args
    spec = json.loads((bundle / "config.json").read_text())
    # mode auto on a host without NVIDIA's toolkit: jit-cdi (#14), as NVIDIA's v1.18+ runtime.
    assert "MARKED=jit-cdi" in spec["process"]["env"]


def test_create_without_bundle_flag_uses_the_working_directory(
    nvshim_exe: str, shim_env: dict[str, str], fake_runtime: FakeRuntime, tmp_path: Path
) -> None:
    bundle = make_bundle_dir(tmp_path / "bundle")
    result = run_shim(nvshim_exe, ["create", "ctr"], shim_env, cwd=bundle)
    assert result.returncode == 0, result.stderr
    assert len(fake_runtime.calls()) == 1


def test_version_prints_then_execs(
    nvshim_exe: str, shim_env: dict[str, str], fake_runtime: FakeRuntime
) -> None:
    result = run_shim(nvshim_exe, ["--version"], shim_env)
    assert result.returncode == 0
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith("nvshim version ")
    assert lines[1].startswith("modifiers: ")
    (call,) = fake_runtime.calls()
    assert call["argv"][1:] == ["--version"]


def test_the_runtime_is_found_without_path(
    nvshim_exe: str, tmp_path: Path, fake_runtime: FakeRuntime
) -> None:
    # podman calls `delete --force` with no PATH at all: the default folders are searched.
    runtime = "/usr/local/sbin/nvshim-test-fake-runc"
    if os.geteuid() != 0:
        pytest.skip("needs root to write in /usr/local/sbin")
    os.makedirs("/usr/local/sbin", exist_ok=True)
    os.symlink(fake_runtime.path, runtime)
    try:
        config = write_config(tmp_path / "c.toml", ["missing-runtime", "nvshim-test-fake-runc"])
        result = subprocess.run(
            [nvshim_exe, "delete", "--force", "x"],
            env={"NVSHIM_CONFIG": str(config)},
            capture_output=True,
            timeout=60,
        )
    finally:
        os.unlink(runtime)
    assert result.returncode == 0, result.stderr
    assert fake_runtime.calls()[0]["argv"][1:] == ["delete", "--force", "x"]


def test_nvshim_never_execs_itself(nvshim_exe: str, tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "runc").symlink_to(nvshim_exe)
    config = write_config(tmp_path / "c.toml", ["runc"])
    env = {"NVSHIM_CONFIG": str(config), "PATH": str(folder)}
    # With only nvshim-as-runc on PATH, the real runc (if any) is found in the
    # default folders; nvshim itself never is.
    result = subprocess.run(
        [nvshim_exe, "--log", str(tmp_path / "log"), "state", "x"],
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert b"RecursionError" not in result.stderr
    if result.returncode == 1 and b"nvshim:" in result.stderr:
        assert b"no low-level runtime found" in result.stderr


def test_no_runtime_found_lists_what_was_tried(nvshim_exe: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", ["no-such-runtime", "/no/such/path"])
    log = tmp_path / "logs" / "runc.json"
    result = subprocess.run(
        [nvshim_exe, "--log", str(log), "--log-format", "json", "state", "x"],
        env={"NVSHIM_CONFIG": str(config), "PATH": "/nonexistent"},
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 1
    line = result.stderr.decode().strip()
    assert line.startswith("nvshim: cannot find the low-level runtime:")
    assert "no-such-runtime" in line
    assert "/no/such/path" in line
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["level"] == "error"
    assert record["msg"] == line
    assert "time" in record


BAD_BUNDLES: list[tuple[str, Any, str]] = [
    ("missing-folder", None, "is not a folder"),
    ("missing-config", "MISSING", "cannot read"),
    ("empty", b"", "is empty"),
    ("not-json", b"{oops", "not valid JSON"),
    ("array", b"[1]", "must hold a JSON object"),
    ("env-string", json.dumps(minimal_spec(process={"env": "A=1"})).encode(), "process.env"),
    ("env-ints", json.dumps(minimal_spec(process={"env": [1]})).encode(), "process.env[0]"),
]


@pytest.mark.parametrize(
    ("name", "content", "message"), BAD_BUNDLES, ids=[b[0] for b in BAD_BUNDLES]
)
def test_bad_bundle_fails_closed(
    nvshim_exe: str,
    shim_env: dict[str, str],
    fake_runtime: FakeRuntime,
    tmp_path: Path,
    name: str,
    content: Any,
    message: str,
) -> None:
    bundle = tmp_path / "bundle"
    if content is not None:
        bundle.mkdir()
        if content != "MISSING":
            (bundle / "config.json").write_bytes(content)
    result = run_shim(nvshim_exe, ["create", "-b", str(bundle), "ctr"], shim_env)
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("nvshim: ")
    assert message in lines[0]
    assert fake_runtime.calls() == []
    if isinstance(content, bytes):
        assert (bundle / "config.json").read_bytes() == content


def test_unreadable_config_json_fails_closed(
    nvshim_exe: str, shim_env: dict[str, str], fake_runtime: FakeRuntime, tmp_path: Path
) -> None:
    bundle = make_bundle_dir(tmp_path / "bundle")
    (bundle / "config.json").unlink()
    (bundle / "config.json").mkdir()
    result = run_shim(nvshim_exe, ["create", "-b", str(bundle), "ctr"], shim_env)
    assert result.returncode == 1
    assert result.stderr.decode().startswith("nvshim: cannot load the spec: cannot read")
    assert fake_runtime.calls() == []


def test_raising_modifier_fails_closed(
    nvshim_exe: str, shim_env: dict[str, str], fake_runtime: FakeRuntime, tmp_path: Path
) -> None:
    plugin = write_plugin_distribution(
        tmp_path / "site",
        "nvshim-grumpy",
        {
            "nvshim_grumpy": """
                from nvshim import Modifier, ModifierError, hookimpl

                def first(spec, context):
                    spec.set_env("HALF", "done")

                def refuse(spec, context):
                    raise ModifierError("no GPUs for you")

                def crash(spec, context):
                    raise KeyError("boom")

                @hookimpl
                def nvshim_modifiers():
                    return [Modifier("first", first, order=1), Modifier("grumpy", refuse, order=2)]
            """
        },
        {"grumpy": "nvshim_grumpy"},
        version="2.5",
    )
    bundle = make_bundle_dir(tmp_path / "bundle")
    before = (bundle / "config.json").read_bytes()
    env = dict(shim_env, PYTHONPATH=str(plugin))
    result = run_shim(nvshim_exe, ["run", "--bundle", str(bundle), "ctr"], env)
    assert result.returncode == 1
    assert result.stderr.decode() == (
        "nvshim: modifier 'grumpy' (nvshim-grumpy 2.5): no GPUs for you\n"
    )
    assert (bundle / "config.json").read_bytes() == before
    assert fake_runtime.calls() == []


def test_plugin_that_fails_to_import_fails_closed(
    nvshim_exe: str, shim_env: dict[str, str], fake_runtime: FakeRuntime, tmp_path: Path
) -> None:
    plugin = write_plugin_distribution(
        tmp_path / "site",
        "nvshim-broken",
        {"nvshim_broken": "import no_such_module_anywhere\n"},
        {"broken": "nvshim_broken"},
    )
    bundle = make_bundle_dir(tmp_path / "bundle")
    before = (bundle / "config.json").read_bytes()
    env = dict(shim_env, PYTHONPATH=str(plugin))
    result = run_shim(nvshim_exe, ["create", "--bundle", str(bundle), "ctr"], env)
    assert result.returncode == 1
    line = result.stderr.decode()
    assert line.count("\n") == 1
    assert "plugin 'broken' (nvshim-broken 1.0) is broken" in line
    assert "ModuleNotFoundError" in line
    assert "Traceback" not in line
    assert (bundle / "config.json").read_bytes() == before
    assert fake_runtime.calls() == []
    # Pass-through never loads plugins, so it is unaffected.
    assert run_shim(nvshim_exe, ["state", "ctr"], env).returncode == 0


def test_bad_config_fails_create_but_not_pass_through(
    nvshim_exe: str, fake_runtime: FakeRuntime, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.toml", [str(fake_runtime.path)], "[nvshim]\ndisabled-modifier = []\n"
    )
    env = {
        "NVSHIM_CONFIG": str(config),
        "PATH": os.environ.get("PATH", ""),
        "NVSHIM_CACHE_DIR": os.environ["NVSHIM_CACHE_DIR"],  # never the host's
    }
    bundle = make_bundle_dir(tmp_path / "bundle")
    result = run_shim(nvshim_exe, ["create", "--bundle", str(bundle), "c"], env)
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"nvshim: bad configuration: config {config}: key 'nvshim': "
        "unknown key(s): disabled-modifier\n"
    )
    assert fake_runtime.calls() == []
    # `delete` must still work so that the engine can clean up.
    assert run_shim(nvshim_exe, ["delete", "c"], env).returncode == 0
    assert len(fake_runtime.calls()) == 1


def test_debug_log_records_the_create(
    nvshim_exe: str, fake_runtime: FakeRuntime, tmp_path: Path
) -> None:
    log = tmp_path / "deep" / "debug.log"
    config = write_config(
        tmp_path / "c.toml",
        [str(fake_runtime.path)],
        f'debug = "{log}"\nlog-level = "debug"\n',
    )
    env = {
        "NVSHIM_CONFIG": str(config),
        "PATH": os.environ.get("PATH", ""),
        "NVSHIM_CACHE_DIR": os.environ["NVSHIM_CACHE_DIR"],  # never the host's
    }
    bundle = make_bundle_dir(tmp_path / "bundle")
    result = run_shim(nvshim_exe, ["create", "--bundle", str(bundle), "c"], env)
    assert result.returncode == 0, result.stderr
    text = log.read_text()
    assert "argv:" in text
    assert str(config) in text
    assert "mode: " in text
    assert f"exec {fake_runtime.path}" in text


def test_unopenable_log_file_does_not_stop_the_container(
    nvshim_exe: str, shim_env: dict[str, str], fake_runtime: FakeRuntime, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    bundle = make_bundle_dir(tmp_path / "bundle")
    args = ["--log", str(tmp_path / "a-file" / "log.json"), "create", "-b", str(bundle), "c"]
    result = run_shim(nvshim_exe, args, shim_env)
    assert result.returncode == 0, result.stderr
    assert len(fake_runtime.calls()) == 1


def test_python_dash_m(shim_env: dict[str, str], fake_runtime: FakeRuntime) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nvshim", "state", "x"],
        env=shim_env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert fake_runtime.calls()[0]["argv"][1:] == ["state", "x"]


def test_an_internal_error_is_one_line_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import nvshim.runtime
    from nvshim._cli import main

    def broken(argv: Any) -> Any:
        raise RuntimeError("unexpected\nsecond line")

    monkeypatch.setattr(nvshim.runtime, "build_runtime", broken)
    assert main(["nvshim", "create", "--bundle", "/nonexistent", "c"]) == 1
    err = capsys.readouterr().err
    assert err == "nvshim: internal error: RuntimeError: unexpected\n"


def test_a_plugins_nvshim_validate_refuses_a_real_create(
    nvshim_exe: str, shim_env: dict[str, str], fake_runtime: FakeRuntime, tmp_path: Path
) -> None:
    # A policy plugin installed as a distribution, as an admin would: its
    # validator must run on `nvshim create`, not only under `nvshim-ctl modify`.
    plugin = write_plugin_distribution(
        tmp_path / "site",
        "nvshim-t-policy",
        {
            "nvshim_t_policy": """
                from nvshim import ModifierError, hookimpl

                @hookimpl
                def nvshim_validate(spec, context):
                    if spec.get_env("FORBIDDEN") is not None:
                        raise ModifierError("FORBIDDEN is not allowed here")
            """
        },
        {"policy": "nvshim_t_policy"},
        version="2.0",
    )
    env = dict(shim_env, PYTHONPATH=str(plugin))
    spec = minimal_spec()
    spec["process"]["env"].append("FORBIDDEN=1")
    bundle = make_bundle_dir(tmp_path / "bundle", spec)
    before = (bundle / "config.json").read_bytes()
    result = run_shim(nvshim_exe, ["create", "--bundle", str(bundle), "ctr"], env)
    assert result.returncode == 1
    assert result.stderr.decode() == (
        "nvshim: validator 'policy' (nvshim-t-policy 2.0): FORBIDDEN is not allowed here\n"
    )
    assert fake_runtime.calls() == []
    assert (bundle / "config.json").read_bytes() == before
    # The same plugin lets a container it does not object to through.
    allowed = make_bundle_dir(tmp_path / "allowed")
    assert run_shim(nvshim_exe, ["create", "--bundle", str(allowed), "ok"], env).returncode == 0
    assert len(fake_runtime.calls()) == 1


#: The SIGPIPE (13) and SIGXFSZ (25) bits of /proc/<pid>/status's SigIgn mask.
_PIPE_AND_XFSZ = (1 << 12) | (1 << 24)


@pytest.mark.parametrize(
    "args", [["state", "ctr"], ["create", "--bundle", "{bundle}", "ctr"]], ids=["pass", "create"]
)
def test_the_runtime_starts_with_sigpipe_and_sigxfsz_at_their_default(
    nvshim_exe: str, tmp_path: Path, args: list[str]
) -> None:
    # Python ignores both signals at start and execv keeps an ignored
    # disposition; a runtime written in C (and crun's hooks) would inherit it.
    record = tmp_path / "sigign"
    runtime = tmp_path / "record-runtime"
    runtime.write_text(f"#!/bin/sh\ngrep '^SigIgn:' /proc/$$/status > {record}\n")
    runtime.chmod(0o755)
    config = write_config(tmp_path / "config.toml", [str(runtime)])
    bundle = make_bundle_dir(tmp_path / "bundle")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVSHIM_", "NVIDIA_"))}
    env["NVSHIM_CONFIG"] = str(config)
    env["NVSHIM_CACHE_DIR"] = str(tmp_path / "cache")
    argv = [a.format(bundle=bundle) for a in args]
    # The test's own child starts with both at their default (subprocess
    # restores them), as an engine starts nvshim.
    result = run_shim(nvshim_exe, argv, env)
    assert result.returncode == 0, result.stderr
    mask = int(record.read_text().split()[1], 16)
    assert mask & _PIPE_AND_XFSZ == 0, f"SigIgn {mask:#x}"
