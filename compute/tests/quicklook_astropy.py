"""The display limits astropy gives for each case of compute/tests/quicklook.rs.

Reads a JSON object {name: [values...]} (null for NaN) and prints {name: {"zscale": [lo, hi],
"percentile": [lo, hi]}}: astropy.visualization's ZScaleInterval() and
AsymmetricPercentileInterval(0.5, 99.5), both with their defaults.
"""
import json
import sys

import numpy as np
from astropy.visualization import AsymmetricPercentileInterval, ZScaleInterval

out = {}
for name, values in json.load(open(sys.argv[1])).items():
    a = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    z = ZScaleInterval().get_limits(a)
    p = AsymmetricPercentileInterval(0.5, 99.5).get_limits(a)
    out[name] = {"zscale": [float(z[0]), float(z[1])], "percentile": [float(p[0]), float(p[1])]}
print(json.dumps(out))
