"""The Celery app the hub's workers run (`celery -A hub.celery_app worker`).

dagster-celery's step task on the broker in `HUB_CELERY_BROKER`, with results over the
broker (`rpc://`): the same app the `celery_executor` builds from the run's config.
"""

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from hub.settings import HubSettings

RESULT_BACKEND = "rpc://"

app = make_app(CeleryExecutor.for_cli(broker=HubSettings().celery_broker, backend=RESULT_BACKEND).app_args())
execute_plan = create_task(app)
