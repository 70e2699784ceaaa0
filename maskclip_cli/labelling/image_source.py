"""Where the Ray engine's images come from: a local folder or an object-store prefix (``s3://``, ``gs://``...).

Both are reached through a :mod:`pyarrow.fs` filesystem, which pickles into Ray tasks: pyarrow's own
S3/GCS/HDFS support first, any fsspec backend (``az://`` with adlfs...) otherwise. Images are named
by their path relative to the folder or prefix, as ``find_images`` names them, so the manifest,
output names and resume are the same whichever way the images are reached. Credentials come from the
usual places of each filesystem (for S3: ``AWS_*`` variables, ``~/.aws``, instance roles;
``AWS_ENDPOINT_URL`` for S3-compatible stores).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..core.errors import MaskCLIPError
from ..formats.image_entry import InvalidEntry, safe_relative
from ..formats.image_files import IMAGE_EXTENSIONS, find_images
from ..formats.label_folder import LabelFolder
from .label_job import require_images


def is_url(source: str | Path) -> bool:
    return "://" in str(source)


@dataclass
class ImageSource:
    """A filesystem and the root path of the images in it; ``local`` is the folder when on disk."""

    filesystem: object  # pyarrow.fs.FileSystem
    root: str
    local: Path | None

    def path_of(self, rel: PurePosixPath) -> str:
        return f"{self.root.rstrip('/')}/{rel}"


def open_source(source: str | Path) -> ImageSource:
    """The filesystem of ``source``; one clear line when its package or its scheme is unknown."""
    import pyarrow.fs as pafs

    if not is_url(source):
        local = Path(source).resolve()
        if not local.is_dir():
            raise MaskCLIPError(f"Input folder not found: {source}")
        return ImageSource(pafs.LocalFileSystem(), local.as_posix(), local)
    url = str(source)
    try:
        filesystem, root = pafs.FileSystem.from_uri(url)
    except (ValueError, OSError) as arrow_error:  # a scheme pyarrow lacks: try fsspec's backends
        try:
            from fsspec.core import url_to_fs
        except ImportError:
            raise MaskCLIPError(f"Cannot open {url}: {arrow_error}. Install fsspec and its package for this scheme.") from None
        try:
            fs, root = url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise MaskCLIPError(f"Cannot open {url}: {exc}") from None
        filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(fs))
    return ImageSource(filesystem, root.rstrip("/"), None)


def list_images(source: ImageSource, folder: LabelFolder) -> tuple[list[PurePosixPath], list[str]]:
    """Relative paths of the images under the source, sorted (a local folder's as the local engine
    lists them: without the output's own folders); one clear line on a listing error. Second,
    object keys left out because outputs named after them would land outside the output folder
    (``..``, a leading ``/``: a key is any string)."""
    unsafe: list[str] = []
    if source.local is not None:
        paths = find_images(source.local, folder.output_dirs())
    else:
        import pyarrow.fs as pafs

        try:
            infos = source.filesystem.get_file_info(pafs.FileSelector(source.root, recursive=True, allow_not_found=True))
        except OSError as exc:  # no credentials, access denied, no such bucket
            raise MaskCLIPError(f"Cannot list {source.root}: {str(exc).splitlines()[0]}") from None
        prefix = source.root.rstrip("/") + "/"
        keys = [i.path[len(prefix):] for i in infos if i.type == pafs.FileType.File and i.path.startswith(prefix)
                and PurePosixPath(i.path).suffix.lower() in IMAGE_EXTENSIONS]
        unsafe = [k for k in keys if not _safe(k)]
        paths = sorted(PurePosixPath(k) for k in keys if _safe(k))
    return require_images(paths, source.local or source.root), unsafe


def _safe(key: str) -> bool:
    try:
        safe_relative(key, "object key")  # the manifest's own rule for a source path
        return True
    except InvalidEntry:
        return False


def read_bytes(filesystem: object, path: str) -> bytes:
    with filesystem.open_input_stream(path) as stream:  # type: ignore[attr-defined]
        return stream.readall()

