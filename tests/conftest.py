from tests.fixtures_e2e import running  # noqa: F401
from tests.fixtures_image import shipline_image  # noqa: F401
from tests.fixtures_kube import kube_cluster  # noqa: F401
from tests.fixtures_mounts import no_mounts_left_behind  # noqa: F401
from tests.fixtures_realnode import job_builds, real_node  # noqa: F401
from tests.fixtures_stack import redis_client, stack  # noqa: F401
