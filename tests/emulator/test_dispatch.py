"""The emulator's patch of moto's dispatch (gk_dispatch.py): the two lookups it keeps answer what moto's own
functions answer, and the server uses the kept ones."""

import gatekeeper_moto  # noqa: F401 - imports every patch, as the server does
import gk_dispatch
import moto.backends
import moto.core.responses
from moto.core.responses import BaseResponse
from moto.dynamodb.responses import DynamoHandler
from moto.ec2.responses import EC2Response
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sns.responses import SNSResponse


def test_the_service_folders_are_moto_s_and_a_host_naming_one_is_routed_to_it():
    assert gk_dispatch.list_of_moto_modules() == frozenset(gk_dispatch.moto_modules())
    assert {"ec2", "dynamodb", "sns", "sqs"} <= gk_dispatch.list_of_moto_modules()
    app = DomainDispatcherApplication(create_backend_app)
    assert app.get_backend_for_host("dynamodb") == "dynamodb"
    assert app.get_backend_for_host("not-a-service") is None


def test_a_response_class_s_handlers_are_moto_s_the_project_s_included():
    for clazz in (EC2Response, DynamoHandler, SNSResponse, BaseResponse):
        assert gk_dispatch.method_names_from_class(clazz) == gk_dispatch.method_names(clazz)
    # A handler the project adds to EC2 (gatekeeper_moto.py) is found, as moto would find it.
    assert "accept_vpc_endpoint_connections" in gk_dispatch.method_names_from_class(EC2Response)


def test_the_kept_lookups_are_what_moto_calls():
    assert moto.backends.list_of_moto_modules is gk_dispatch.list_of_moto_modules
    assert moto.core.responses.method_names_from_class is gk_dispatch.method_names_from_class
