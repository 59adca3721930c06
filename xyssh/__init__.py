"""xyssh: carry Xymon reports over SSH, one key per device."""

__version__ = '0.1.0'
