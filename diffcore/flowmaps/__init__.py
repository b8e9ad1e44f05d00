"""Flow maps: the exact map ``Phi_{t->s}`` of the laboratory's ODEs and the checks a learned map must pass.

:func:`exact_flow_map` gives ``Phi_{t->s}`` in closed form for Gaussian data (affine) and as a
tight adaptive reference for mixtures; :func:`flow_map_residual` and :func:`semigroup_residual`
measure how far any map (exact or learned) is from satisfying the consistency (Eulerian) equation
and the semigroup law; :func:`to_flow_map` and :func:`from_flow_map` convert between a flow map
and the four ways a network represents one (mean velocity, shortcut, CTM, consistency);
:func:`flow_map_sample` and :func:`consistency_sample` generate in a few jumps.
Book chapter "Flow maps and few-step generation".
"""

from diffcore.flowmaps._checks import flow_map_residual, semigroup_residual
from diffcore.flowmaps._exact import FlowMap, exact_flow_map
from diffcore.flowmaps._param import MAP_PARAMETRIZATIONS, from_flow_map, to_flow_map
from diffcore.flowmaps._sample import consistency_sample, flow_map_sample

__all__ = [
    "MAP_PARAMETRIZATIONS",
    "FlowMap",
    "consistency_sample",
    "exact_flow_map",
    "flow_map_residual",
    "flow_map_sample",
    "from_flow_map",
    "semigroup_residual",
    "to_flow_map",
]
