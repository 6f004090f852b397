"""Files in a tfds manual dir that come either extracted or still in their official zip."""
from __future__ import annotations

import os
import zipfile

from etils import epath


class ManualFiles:
  """Reads <folder>/<name> from the manual dir: the extracted folder if there, else its zip.

  `zips` maps a folder to the zip (in the manual dir) that holds it as `<folder>/...`; the
  official COCO and Visual Genome archives are laid out that way.
  """

  def __init__(self, manual_dir: epath.Path, zips: dict[str, str]):
    self._dir = manual_dir
    self._zip_names = zips
    self._zips = {}

  def _zip(self, folder: str) -> zipfile.ZipFile | None:
    if folder not in self._zips:
      path = self._dir / self._zip_names[folder]
      self._zips[folder] = zipfile.ZipFile(os.fspath(path)) if path.exists() else None
    return self._zips[folder]

  def exists(self, folder: str, name: str) -> bool:
    if (self._dir / folder / name).exists():
      return True
    archive = self._zip(folder)
    return archive is not None and f'{folder}/{name}' in archive.NameToInfo

  def read(self, folder: str, name: str) -> bytes:
    path = self._dir / folder / name
    if path.exists():
      return path.read_bytes()
    if self._zip(folder) is None:
      raise FileNotFoundError(f'{folder}/{name} not found in manual dir {self._dir} (neither '
                              f'extracted nor in {self._zip_names[folder]})')
    return self._zips[folder].read(f'{folder}/{name}')

  def close(self) -> None:
    for archive in self._zips.values():
      if archive is not None:
        archive.close()
