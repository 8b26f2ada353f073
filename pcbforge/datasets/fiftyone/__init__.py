"""A pcbforge dataset in the FiftyOne App, and the edits made there brought back.

One module per job:

* :mod:`.export`: :func:`to_fiftyone` loads a dataset folder into a persistent FiftyOne
  dataset (samples, fields, boxes, masks, templates, saved views);
  :func:`table_view_counts` says what its views must count.
* :mod:`.write_back`: :func:`from_fiftyone` writes the labels and tags edited in FiftyOne
  back into a pcbforge dataset (``pcbforge view --from-fiftyone``).
* :mod:`.media`: the file the App shows for each image (a PNG copy in the dataset's view
  cache when browsers cannot decode the original).
* :mod:`.app`: the App session (:func:`launch_app` on loopback, :func:`shutdown`) and
  its database.

:mod:`.fields` holds the mapping both directions share, :mod:`.library` the import of
fiftyone itself. Nothing here imports fiftyone until a function needs it (importing it
takes seconds), and :func:`pcbforge.env.apply_offline_defaults` runs before it does.
"""

from pcbforge.datasets.fiftyone.app import (
    REMOTE_RISK,
    database_description,
    is_loopback,
    launch_app,
    remote_warning,
    shutdown,
)
from pcbforge.datasets.fiftyone.export import (
    table_view_counts,
    to_fiftyone,
    view_counts,
    view_urls,
)
from pcbforge.datasets.fiftyone.fields import (
    CLASS_VIEW_PREFIX,
    KEY_FIELD,
    LABEL_FIELD,
    SPLIT_TAGS,
    TEMPLATE_FIELD,
    box_mask,
    duplicate_clusters,
    field_name,
    full_mask,
    parse_tags,
)
from pcbforge.datasets.fiftyone.library import import_fiftyone
from pcbforge.datasets.fiftyone.media import (
    BROWSER_DECODED,
    BROWSER_FORMATS,
    VIEW_CACHE,
    display_file,
    display_files,
    media_path,
)
from pcbforge.datasets.fiftyone.write_back import FROM_FIFTYONE_REPORT, from_fiftyone

__all__ = [
    "BROWSER_DECODED", "BROWSER_FORMATS", "CLASS_VIEW_PREFIX", "FROM_FIFTYONE_REPORT",
    "KEY_FIELD", "LABEL_FIELD", "REMOTE_RISK", "SPLIT_TAGS", "TEMPLATE_FIELD", "VIEW_CACHE",
    "box_mask", "database_description", "display_file", "display_files",
    "duplicate_clusters", "field_name", "from_fiftyone", "full_mask", "import_fiftyone",
    "is_loopback", "launch_app", "media_path", "parse_tags", "remote_warning", "shutdown",
    "table_view_counts", "to_fiftyone", "view_counts", "view_urls",
]
