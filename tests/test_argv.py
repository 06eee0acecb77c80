"""Parsing runc's command line: global options, the subcommand, the bundle."""

from __future__ import annotations

import os

import pytest

from nvshim._argv import ArgvError, bundle_from, parse_args

# NVIDIA's GetBundleDir cases (internal/oci/args_test.go), plus ours.
BUNDLE_CASES = [
    ([], None),
    (["-b", "/foo/bar"], "/foo/bar"),
    (["--not-bundle", "/foo/bar"], None),
    (["--"], None),
    (["-bundle", "/foo/bar"], "/foo/bar"),
    (["--bundle", "/foo/bar"], "/foo/bar"),
    (["--bundle=/foo/bar"], "/foo/bar"),
    (["-b=/foo/bar"], "/foo/bar"),
    (["-b=/foo/=bar"], "/foo/=bar"),
    (["-bundle=/foo/bar"], "/foo/bar"),
    (["-b", "/foo/bar", "--bundle", "/baz/qux"], "/baz/qux"),
    (["--bundle=/a", "-b=/b"], "/b"),
    (["--pid-file", "/run/x.pid", "-b", "/foo", "ctr"], "/foo"),
    (["--bundle", "create"], "create"),
]


@pytest.mark.parametrize(("args", "expected"), BUNDLE_CASES)
def test_bundle_from(args: list[str], expected: str | None) -> None:
    assert bundle_from(args) == expected


@pytest.mark.parametrize(
    "args", [["-b"], ["--bundle"], ["-bundle"], ["--bundle="], ["-b="], ["x", "--bundle", ""]]
)
def test_bundle_flag_without_value_is_an_error(args: list[str]) -> None:
    with pytest.raises(ArgvError, match="needs a value"):
        bundle_from(args)


# (argv after argv[0], command, is_create, options)
COMMAND_CASES = [
    (["create", "ctr"], "create", True, {}),
    (["run", "ctr"], "run", True, {}),
    (["start", "ctr"], "start", False, {}),
    (["delete", "create"], "delete", False, {}),
    (["state", "run"], "state", False, {}),
    (["--root", "/run/runc", "create", "ctr"], "create", True, {"root": "/run/runc"}),
    (["--root=/run/runc", "create", "ctr"], "create", True, {"root": "/run/runc"}),
    (["-root", "/x", "kill", "ctr"], "kill", False, {"root": "/x"}),
    (
        ["--log", "/l.json", "--log-format", "json", "create", "--bundle", "/b", "ctr"],
        "create",
        True,
        {"log": "/l.json", "log-format": "json"},
    ),
    (["--debug", "--systemd-cgroup", "create", "ctr"], "create", True, {}),
    (
        ["--criu", "/usr/sbin/criu", "checkpoint", "ctr"],
        "checkpoint",
        False,
        {"criu": "/usr/sbin/criu"},
    ),
    (["--rootless", "false", "run", "ctr"], "run", True, {"rootless": "false"}),
    (["--cgroup-manager", "systemd", "create", "c"], "create", True, {"cgroup-manager": "systemd"}),
    (["--log-level", "debug", "ps", "c"], "ps", False, {"log-level": "debug"}),
    (["--root", "create", "state", "x"], "state", False, {"root": "create"}),
    (["--log", "create", "delete", "x"], "delete", False, {"log": "create"}),
    (["features"], "features", False, {}),
    (["frobnicate", "x"], "frobnicate", False, {}),
    ([], None, False, {}),
    (["--version"], None, False, {}),
    (["--root", "/a", "--root", "/b", "list"], "list", False, {"root": "/b"}),
]


@pytest.mark.parametrize(("argv", "command", "is_create", "options"), COMMAND_CASES)
def test_subcommand_is_first_argument_after_global_options(
    argv: list[str], command: str | None, is_create: bool, options: dict[str, str]
) -> None:
    args = parse_args(argv)
    assert args.command == command
    assert args.is_create is is_create
    assert args.options == options


def test_flags() -> None:
    args = parse_args(["--debug", "-v", "-h", "--systemd-cgroup", "state", "x"])
    assert args.debug
    assert args.version
    assert "help" in args.flags
    assert "systemd-cgroup" in args.flags
    assert args.command_args == ("x",)


@pytest.mark.parametrize("option", ["--root", "--log", "--log-format", "--criu", "--rootless"])
def test_value_option_without_value_is_an_error(option: str) -> None:
    with pytest.raises(ArgvError, match=option):
        parse_args([option])


def test_log_settings() -> None:
    args = parse_args(["--log", "/var/log/x.json", "--log-format=json", "create", "c"])
    assert args.log_file == "/var/log/x.json"
    assert args.log_format == "json"
    assert parse_args(["create", "c"]).log_format == "text"


def test_bundle_defaults_to_the_working_directory(tmp_path: os.PathLike[str]) -> None:
    args = parse_args(["create", "ctr"])
    assert args.bundle(cwd=str(tmp_path)) == str(tmp_path)


def test_relative_bundle_is_made_absolute() -> None:
    args = parse_args(["create", "--bundle", "b/../bundle", "ctr"])
    assert args.bundle(cwd="/srv") == "/srv/bundle"


def test_bundle_only_after_the_subcommand() -> None:
    # A global --root whose value looks like a bundle flag does not count.
    args = parse_args(["--root", "/r", "create", "-b=/x", "c"])
    assert args.bundle(cwd="/") == "/x"
