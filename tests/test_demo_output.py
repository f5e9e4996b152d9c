"""`feedrank demo` keeps the terminal for progress: everything else goes to its log file."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_output_and_childrens_output_go_to_the_log_progress_to_the_terminal(tmp_path):
    log = tmp_path / "demo.log"
    script = textwrap.dedent(
        f"""
        import subprocess, sys
        from jobs.demo import _output_to
        with _output_to({str(log)!r}) as terminal:
            print("python stdout")
            print("python stderr", file=sys.stderr)
            subprocess.run(["sh", "-c", "echo child stdout; echo child stderr >&2"], check=True)
            terminal.write("progress line\\n")
        print("after the demo")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    # The terminal saw only the progress, and what came after the context.
    assert out.stdout == "progress line\nafter the demo\n"
    assert out.stderr == ""
    text = log.read_text()
    for line in ("python stdout", "python stderr", "child stdout", "child stderr"):
        assert line in text, line
    assert "progress line" not in text
