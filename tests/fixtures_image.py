"""Session fixture: Shipline's own image, built once per session from the Dockerfile on the
local Debian base and pushed to the test stack's registry (``devstack.shiplineimage``)."""

from __future__ import annotations

import pytest

from devstack.shiplineimage import ShiplineImage, build_shipline_image
from devstack.stack import Stack


@pytest.fixture(scope="session")
def shipline_image(stack: Stack) -> ShiplineImage:
    return build_shipline_image(stack)
