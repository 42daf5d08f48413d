"""The suite with what looks across its cases or layers: the session object the plugin hands out.

:class:`Study` is a :class:`~ptqcore.suite.Suite` whose two hooks are filled from this layer: the
float layers of an ``int8-mixed`` build (:mod:`ptqcore.study.mixed`'s search, ranked by
:mod:`ptqcore.study.sensitivity`) and the figures a record gets beside its own accuracy and size
(the INT8 drop split against the fake-quant reference, :mod:`ptqcore.study.int8_reference`; the
``int8-mixed`` search; technique figures, :mod:`ptqcore.study.techniques`). The suite never imports
this module: it calls its own methods, which this class overrides.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Optional, Tuple

from ptqcore.case import DEFAULT_TECHNIQUE, Case, Precision
from ptqcore.measure.accuracy import Predictions
from ptqcore.models.technique_models import technique_base_case
from ptqcore.study.int8_reference import int8_figures, reference_predictions
from ptqcore.study.layer_profiles import paired_figures, profile_case
from ptqcore.study.mixed import float_nodes, mixed_figures
from ptqcore.study.techniques import technique_figures
from ptqcore.suite import Suite


class Study(Suite):
    """A :class:`~ptqcore.suite.Suite` that also runs the studies of its cases (see the module docstring)."""

    #: Where ``--ptq-profile-layers`` writes each case's full table, and the folder the records name it
    #: relative to (the run's JSON's; None: absolute). The plugin sets it; None: a folder of the session's
    #: own under the cache (``layer-profiles/<UTC start time>``), so no run overwrites another's tables.
    layer_tables: Optional[Tuple[Path, Optional[Path]]] = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: The layer profiles of this session's cases, for pairing INT8 with its float twin.
        self.layer_profiles: Dict[Case, object] = {}
        #: Without a JSON to sit beside, a session's tables go to a folder of its own under the cache.
        self._own_tables = self.options.cache_dir / "layer-profiles" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())

    def profile_layers(self, case: Case) -> Optional[dict]:
        """Profile ``case``'s layers (:func:`~ptqcore.study.layer_profiles.profile_case`) into its record's
        ``layer_profile`` and complete the INT8 pairs it belongs to; None where it has no profiler."""
        folder, relative_to = self.layer_tables or (self._own_tables, None)
        made = profile_case(self, case, folder, relative_to)
        if made is None:
            return None
        self.layer_profiles[case], figures = made
        self.book.update(case, layer_profile=figures)
        for other, fields in paired_figures(self, self.layer_profiles, case).items():
            self.book.update(other, **fields)
        return figures

    def float_layers(self, case: Case) -> tuple:
        """The nodes the INT8 build of ``case`` keeps in float: the search's for ``int8-mixed``, else none."""
        return float_nodes(self, case)

    def int8_reference(self, case: Case) -> Predictions:
        """Predictions of the fake-quant reference of an INT8 case (:mod:`ptqcore.study.int8_reference`), once."""
        return self.once(("int8-reference",) + self.artifact_identity(case), lambda: reference_predictions(self, case))

    def study_figures(self, case: Case, figures: dict) -> dict:
        """The INT8 split of a quantized case (against its technique's own model where it has one),
        the ``int8-mixed`` search, and technique figures when the run has techniques."""
        out: dict = {}
        if case.precision.quantized:
            predictions = self.predictions(case)
            if case.technique == DEFAULT_TECHNIQUE:
                own = self.predictions(self.reference_case(case))
            else:
                own = self.predictions(technique_base_case(case))
            out.update(int8_figures(self, case, predictions, own, self.int8_reference(case)))
        if case.precision is Precision.INT8_MIXED:
            out.update(mixed_figures(self, case))
        if self.techniques != (DEFAULT_TECHNIQUE,):
            path = Path(figures["artifact_path"]) if "artifact_path" in figures else self.base_model(case.model).file.path
            out.update(technique_figures(self, case, path, {**figures, **out}))
        return out
