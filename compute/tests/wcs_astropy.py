"""The world coordinates astropy.wcs gives for each case of compute/tests/wcs.rs.

Reads a JSON list of cases ({"name", "cards", "pixels"}) and prints {name: [[ra, dec], ...]}:
ICRS degrees for each pixel (1-based, FITS convention), from the core WCS only
(wcs_pix2world: SIP distortion left out, as Archway's index leaves it out), galactic
positions converted to ICRS by astropy.coordinates.
"""
import json
import sys
import warnings

import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

warnings.simplefilter("ignore", FITSFixedWarning)

out = {}
for case in json.load(open(sys.argv[1])):
    header = fits.Header.fromstring("\n".join(case["cards"]), sep="\n")
    w = WCS(header, naxis=2)
    world = w.wcs_pix2world([list(p) for p in case["pixels"]], 1)
    lng, lat = w.wcs.lng, w.wcs.lat
    lon, latv = world[:, lng], world[:, lat]
    if w.wcs.lngtyp == "GLON":
        c = SkyCoord(lon * u.deg, latv * u.deg, frame="galactic").icrs
        lon, latv = c.ra.deg, c.dec.deg
    out[case["name"]] = [[float(a) % 360.0, float(d)] for a, d in zip(lon, latv)]
print(json.dumps(out))
