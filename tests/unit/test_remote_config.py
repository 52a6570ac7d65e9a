"""targets/remote.py without a network: the SSH target's config checks, the ssh command line edgeft
builds (host-key checking left to the user's config), and the messages of ssh failures."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgeft.targets.remote import RemoteTarget, SshDevice, _ssh_failure, content_hash


def test_destination_and_options_are_checked():
    t = RemoteTarget(name="pi5", ssh="pi@pi5.local")
    assert t.runtime == "onnxruntime" and t.accepts == ("onnx", "ort") and t.runs_as == "cpu"
    assert RemoteTarget(name="nuc", ssh="edge-nuc", runtime="openvino").accepts == ("onnx", "openvino")
    for bad in ("-oProxyCommand=x", "pi@host; rm -rf /", ""):
        with pytest.raises(ValidationError, match="not an ssh destination"):
            RemoteTarget(name="x", ssh=bad)
    with pytest.raises(ValidationError, match="Key=Value"):
        RemoteTarget(name="x", ssh="h", ssh_options=["Port 22"])
    for opt in ("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "userknownhostsfile = /tmp/k"):
        with pytest.raises(ValidationError, match="host-key checking"):
            RemoteTarget(name="x", ssh="h", ssh_options=[opt])
    with pytest.raises(ValidationError):
        RemoteTarget(name="x", ssh="h", runtime="tflite")
    with pytest.raises(ValidationError):
        RemoteTarget(name="x", ssh="h", password="hunter2")        # unknown keys are errors


def test_ssh_command_adds_only_batch_mode_timeouts_and_a_control_socket(tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host b\n")
    dev = SshDevice(RemoteTarget(name="b", ssh="ssh://me@b:2222", ssh_config=str(cfg), connect_timeout_s=7,
                                 ssh_options=["Compression=yes"]), tmp_path)
    try:
        cmd = dev.ssh_command("true")
    finally:
        dev.close()
    assert cmd[:3] == ["ssh", "-F", str(cfg)] and cmd[-3:] == ["--", "ssh://me@b:2222", "true"]
    opts = [cmd[i + 1] for i, c in enumerate(cmd) if c == "-o"]
    assert "BatchMode=yes" in opts and "ConnectTimeout=7" in opts and "Compression=yes" in opts
    assert not any(o.lower().startswith(("stricthostkeychecking", "userknownhostsfile")) for o in opts)


@pytest.mark.parametrize(("rc", "stderr", "says"), [
    (255, "Host key verification failed.\n", "host key does not match"),
    (255, "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n", "host key does not match"),
    (255, "ssh: connect to host 10.0.0.9 port 22: Connection refused\n", "unreachable"),
    (255, "ssh: Could not resolve hostname pi5.local: Name or service not known\n", "unreachable"),
    (255, "me@b: Permission denied (publickey).\n", "authentication refused"),
    (255, "Connection to b closed by remote host.\n", "connection was lost"),
    (255, "", "connection was lost"),
    (2, "tar: objects/x/model.onnx: Wrote only 4096 of 10240 bytes\ntar: Exiting with failure status due to "
        "previous errors\n", "out of disk"),
    (1, "edgeft device runner: Fail: ... Failed to allocate memory for requested buffer\n", "out of memory"),
    (137, "", "out of memory"),
    (1, "edgeft device runner: ValueError: bad job\n", "exit status 1: edgeft device runner: ValueError: bad job"),
])
def test_ssh_failures_say_what_went_wrong(rc, stderr, says):
    e = _ssh_failure("pi5", "run", rc, stderr)
    assert says in str(e) and str(e).startswith("device 'pi5', step run: ")


def test_content_hash_names_and_contents():
    a = content_hash({"model.onnx": "aa", "model.onnx.data": "bb"})
    assert a == content_hash({"model.onnx.data": "bb", "model.onnx": "aa"})
    assert a != content_hash({"model.onnx": "aa", "model.onnx.data": "bc"})
    assert a != content_hash({"other.onnx": "aa", "model.onnx.data": "bb"})


def test_workdir_in_the_home_is_quoted_for_the_device_shell():
    def wd(w):
        dev = SshDevice(RemoteTarget(name="b", ssh="b", workdir=w))
        dev.close()
        return dev.wd

    assert wd("~/edge ft") == "'edge ft'" and wd(".cache/edgeft-device") == ".cache/edgeft-device"
    assert wd("/srv/edgeft") == "/srv/edgeft" and wd("$(reboot)") == "'$(reboot)'"
