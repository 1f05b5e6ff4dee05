"""Finding a Triton Inference Server and running it on a model repository: ``TritonServer`` (a context manager).

    with TritonServer("model_repository/", http_port=18800, grpc_port=18801) as server:
        print(server.http_url)        # ready when the block starts; stopped when it ends, whatever happened

Where Triton comes from, in order: ``tritonserver=`` / ``$TRTPIPE_TRITONSERVER``, ``tritonserver`` on PATH
(NVIDIA's container, backends in /opt/tritonserver/backends), then the copy bundled in the nvidia-pytriton
wheel (`pip install 'trtpipe[serve]'`). Facts about that bundled copy (Triton 2.51), measured here:

- it has only the Python backend (no onnxruntime, no TensorRT backend);
- its Python backend stub finds the interpreter through PATH, so this environment's ``bin/`` goes
  first on PATH, and the wheel's ``nvidia_pytriton.libs`` on LD_LIBRARY_PATH;
- the stub is built against NumPy 1.x: under NumPy 2 every tensor a model returns has byte size 0
  ("output tensor shape does not match size of output"). When this environment has NumPy 2, the
  stub therefore runs in a small side environment (a venv with numpy<2 and an OpenCV that supports
  it, and this environment's packages behind them), made once in trtpipe's cache folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from trtpipe.errors import DependencyError, InputError, TrtpipeError

INSTALL_HINT = (
    "pip install 'trtpipe[serve]' and `pip install --no-deps nvidia-pytriton==0.7.0` (its wheel bundles a Triton "
    "with the Python backend), run inside NVIDIA's Triton container (nvcr.io/nvidia/tritonserver), "
    "or pass --tritonserver PATH"
)
# The stub of the bundled Triton 2.51 needs NumPy 1.x; OpenCV 4.11 is the last release that supports it.
STUB_ENV_PACKAGES = ("numpy==1.26.4", "opencv-python-headless==4.11.0.86")


class ServerError(TrtpipeError):
    """Triton did not start, did not become ready, or stopped unexpectedly."""


@dataclass(frozen=True)
class TritonInstallation:
    """A tritonserver binary and where its backends are."""

    binary: Path
    backend_dir: Path
    bundled: bool  # the copy inside the nvidia-pytriton wheel
    library_dir: Path | None = None  # added to LD_LIBRARY_PATH (the wheel's nvidia_pytriton.libs)
    stub_dir: Path | None = None  # the wheel's Python backend stubs, one per Python version

    @property
    def backends(self) -> frozenset[str]:
        """Names of the backends this server can load (folders in its backend directory)."""
        if not self.backend_dir.is_dir():
            return frozenset()
        return frozenset(p.name for p in self.backend_dir.iterdir() if p.is_dir() and not p.name.startswith("_"))

    def describe(self) -> str:
        origin = "bundled in nvidia-pytriton" if self.bundled else str(self.binary)
        return f"Triton ({origin}; backends: {', '.join(sorted(self.backends)) or 'none'})"


def find_tritonserver(tritonserver: str | Path | None = None) -> TritonInstallation:
    """Finds Triton: the given binary, ``$TRTPIPE_TRITONSERVER``, ``tritonserver`` on PATH, or the bundled one.

    Raises:
        DependencyError: none found; the hint says how to install one.
    """
    given = tritonserver or os.environ.get("TRTPIPE_TRITONSERVER")
    if given:
        binary = Path(given)
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise DependencyError(f"tritonserver {binary} is not an executable file", INSTALL_HINT)
        return _installed(binary)
    on_path = shutil.which("tritonserver")
    if on_path:
        return _installed(Path(on_path))
    bundled = _bundled()
    if bundled is None:
        raise DependencyError("no Triton Inference Server found: no tritonserver on PATH and no nvidia-pytriton wheel", INSTALL_HINT)
    return bundled


def _installed(binary: Path) -> TritonInstallation:
    candidates = [Path("/opt/tritonserver/backends"), binary.resolve().parent.parent / "backends"]
    backend_dir = next((c for c in candidates if c.is_dir()), candidates[-1])
    return TritonInstallation(binary, backend_dir, bundled=False)


def _bundled() -> TritonInstallation | None:
    # find_spec, not import: importing pytriton pulls in its whole client stack.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        return None
    libs = root.parent.parent / "nvidia_pytriton.libs"
    return TritonInstallation(binary, root / "backends", True, libs if libs.is_dir() else None, root / "python_backend_stubs")


# ----------------------------------------------------------------------------------------------
# The Python the backend stub runs
# ----------------------------------------------------------------------------------------------


def backend_python_bin(installation: TritonInstallation) -> Path:
    """The ``bin/`` folder put first on the server's PATH, whose python the Python backend stub uses."""
    import numpy

    if installation.bundled and int(numpy.__version__.split(".")[0]) >= 2:
        return stub_environment() / "bin"
    return Path(sys.prefix) / "bin"


def cache_dir() -> Path:
    """``$TRTPIPE_CACHE``, else ``$XDG_CACHE_HOME/trtpipe``, else ``~/.cache/trtpipe``."""
    if os.environ.get("TRTPIPE_CACHE"):
        return Path(os.environ["TRTPIPE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trtpipe"


def stub_environment() -> Path:
    """A venv with NumPy 1.x for the bundled Triton's Python stub, this environment's packages behind it.

    Made once (pip from the package index, about 40 MB) and reused; written beside its final place
    and renamed, so an interrupted setup leaves nothing half made.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    key = "-".join(p.split("==")[1] for p in STUB_ENV_PACKAGES)
    env = cache_dir() / f"triton-stub-py{version}-{key}"
    marker = env / "trtpipe-stub-env.json"
    if marker.is_file():
        return env
    env.parent.mkdir(parents=True, exist_ok=True)
    print(f"trtpipe: preparing the Python environment for the bundled Triton's stub (NumPy 1.x, once): {env}", file=sys.stderr)
    partial = Path(tempfile.mkdtemp(prefix=f".{env.name}.partial-", dir=env.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(partial)], check=True, capture_output=True)
        site_packages = partial / "lib" / f"python{version}" / "site-packages"
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--target", str(site_packages), *STUB_ENV_PACKAGES]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise DependencyError(
                f"could not install {' '.join(STUB_ENV_PACKAGES)} for the bundled Triton's Python stub: "
                f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}",
                f"check access to the package index, or run `{' '.join(command[:6])} ... {' '.join(STUB_ENV_PACKAGES)}` "
                "yourself; or use a Triton whose Python backend supports NumPy 2",
            )
        # This environment's packages (trtpipe, onnxruntime, ...) come after the NumPy 1.x ones.
        parents = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
        lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in dict.fromkeys(parents))
        (site_packages / "zz_trtpipe_parent_env.pth").write_text(lines)
        (partial / "trtpipe-stub-env.json").write_text(json.dumps({"packages": STUB_ENV_PACKAGES, "parent": sys.prefix}) + "\n")
        partial.rename(env)
    except subprocess.CalledProcessError as exc:
        raise DependencyError(f"could not create a venv for Triton's Python stub: {exc.stderr!r}", "check that `python -m venv` works") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return env


# ----------------------------------------------------------------------------------------------
# Running the server
# ----------------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS's choice)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def check_port_free(port: int, host: str = "127.0.0.1", option: str = "--http-port") -> None:
    with socket.socket() as probe:
        # As Triton binds: connections in TIME_WAIT from a previous run do not make a port busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise InputError(f"port {host}:{port} is in use", f"choose another {option}, or stop what listens there") from None


class TritonServer:
    """A tritonserver process on ``repo``, listening on 127.0.0.1 only; a context manager that always stops it.

    Args:
        repo: the model repository.
        http_port, grpc_port: where to listen. Defaults to 18800 / 18801.
        metrics_port: Prometheus metrics port; None turns metrics off.
        installation: which Triton. Defaults to :func:`find_tritonserver`.
        log_path: where the server's output goes. Defaults to ``triton.log`` in a temporary folder.
        startup_timeout: seconds to wait for every model to be ready.
        exit_timeout: seconds Triton waits on stop for in-flight requests and open client connections.
        host: the address to listen on; 127.0.0.1 keeps the server private to this machine.
    """

    def __init__(
        self,
        repo: str | Path,
        *,
        http_port: int = 18800,
        grpc_port: int = 18801,
        metrics_port: int | None = None,
        installation: TritonInstallation | None = None,
        log_path: str | Path | None = None,
        startup_timeout: float = 120.0,
        exit_timeout: int = 10,
        host: str = "127.0.0.1",
    ):
        self.repo = Path(repo)
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.installation = installation
        self.log_path = Path(log_path) if log_path else None
        self.startup_timeout = startup_timeout
        self.exit_timeout = exit_timeout
        self.host = host
        self._process: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._log = None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> "TritonServer":
        """Starts Triton and waits until the server and every model in the repository are ready."""
        if not (self.repo / ".").is_dir():
            raise InputError(f"model repository {self.repo} is not a folder", "export one first: trtpipe triton-export MODEL --repo DIR")
        for port, option in ((self.http_port, "--http-port"), (self.grpc_port, "--grpc-port"), (self.metrics_port, "--metrics-port")):
            if port is not None:
                check_port_free(port, self.host, option)
        installation = self.installation or find_tritonserver()
        self.installation = installation
        self._workdir = Path(tempfile.mkdtemp(prefix="trtpipe-triton-"))
        try:
            command, env = self._command(installation), self._environment(installation)
            self.log_path = self.log_path or self._workdir / "triton.log"
            self._log = open(self.log_path, "ab")
            # A session of its own: Ctrl-C in the terminal reaches us, and we stop Triton and its stubs in order.
            self._process = subprocess.Popen(
                command, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_terminate_with_parent,
            )
            self.wait_ready(self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        """Polls ``/v2/health/ready`` until it answers 200; raises ServerError with the log's end if Triton exits."""
        deadline = time.monotonic() + timeout
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if not self.running:
                raise ServerError(
                    f"Triton exited with code {self._process.returncode} while starting on {self.repo}:\n{self.log_tail()}",
                    "read the log lines above (a model that failed to load names its error); fix the repository or ports",
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise ServerError(
            f"Triton was not ready after {timeout:.0f} s on {self.repo}:\n{self.log_tail()}",
            "a large model may need longer (startup_timeout), or a model hangs in initialize; see the log",
        )

    def wait(self) -> int:
        """Blocks until Triton exits; returns its exit code."""
        return self._process.wait() if self._process else 0

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM to Triton (it drains in-flight requests and unloads models), SIGKILL after ``timeout`` s.

        ``timeout`` defaults to the exit timeout plus 10 s.
        """
        timeout = self.exit_timeout + 10 if timeout is None else timeout
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                # Triton and its Python stubs share the process group started for it: kill them all.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            if self.log_path and self.log_path.parent == self._workdir:
                # keep the log readable after stop: move it beside the temporary folder's parent
                kept = Path(tempfile.gettempdir()) / f"{self._workdir.name}.log"
                with contextlib.suppress(OSError):
                    shutil.move(self.log_path, kept)
                    self.log_path = kept
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def log_tail(self, lines: int = 8) -> str:
        """The log's error lines (Triton's ``E...`` lines, Python tracebacks' last lines) and its last ``lines``."""
        if not self.log_path or not self.log_path.is_file():
            return "(no log)"
        if self._log is not None:
            self._log.flush()
        text = [line for line in self.log_path.read_text(errors="replace").splitlines() if not line.startswith(("+", "|"))]
        errors = [line for line in text[:-lines] if re.match(r"E\d{4} |\w*(Error|Exception):", line)]
        return "\n".join(errors[-10:] + text[-lines:])

    def __enter__(self) -> "TritonServer":
        return self.start() if not self.running else self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- command line and environment ----------------------------------------------------------

    def _command(self, installation: TritonInstallation) -> list[str]:
        command = [
            str(installation.binary),
            f"--model-repository={self.repo.resolve()}",
            f"--backend-directory={self._backend_dir(installation)}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--exit-timeout-secs={self.exit_timeout}",
            "--log-verbose=0",
        ]
        if self.metrics_port is None:
            command.append("--allow-metrics=false")
        else:
            command += [f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}"]
        return command

    def _backend_dir(self, installation: TritonInstallation) -> Path:
        """The bundled Triton needs the stub for this Python beside its Python backend: linked in a temp folder."""
        if not installation.bundled:
            return installation.backend_dir
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = installation.stub_dir / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise DependencyError(
                f"the bundled Triton has no Python backend stub for Python {version} (looked for {stub})",
                "use a Python version nvidia-pytriton supports (3.8-3.13), or NVIDIA's Triton container",
            )
        backends = self._workdir / "backends"
        for source in installation.backend_dir.iterdir():
            if source.is_dir() and not source.name.startswith("_"):
                (backends / source.name).mkdir(parents=True)
                for item in source.iterdir():
                    (backends / source.name / item.name).symlink_to(item)
        (backends / "python" / "triton_python_backend_stub").symlink_to(stub)
        return backends

    def _environment(self, installation: TritonInstallation) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(backend_python_bin(installation)), env.get("PATH", "")])
        if installation.library_dir is not None:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (env.get("LD_LIBRARY_PATH"), str(installation.library_dir)) if p)
        return env


def _terminate_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the process that started Triton dies.

    stop() covers every orderly exit; this covers the parent being killed outright (SIGKILL, a CI
    timeout), which would otherwise leave Triton and its stubs running with the ports taken.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
