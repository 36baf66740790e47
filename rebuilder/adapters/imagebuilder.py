"""ImageBuilder over azure-mgmt-imagebuilder's virtual_machine_image_templates."""

from __future__ import annotations

from collections.abc import Iterator

from rebuilder.adapters import shapes
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.adapters.errors import translated
from rebuilder.domain import resource_ids
from rebuilder.domain.definition import TemplateDefinition
from rebuilder.domain.model import ImageTemplate, RunOutput, Scope, TemplateId


class SdkImageBuilder:
    def __init__(self, clients: AzureClients) -> None:
        self._clients = clients

    def _templates(self, subscription_id: str):  # type: ignore[no-untyped-def]
        return self._clients.imagebuilder(subscription_id).virtual_machine_image_templates

    def list_templates(self, scope: Scope) -> Iterator[ImageTemplate]:
        templates = self._templates(scope.subscription_id)
        with translated(f"list image templates in {scope.id}"):
            pages = (
                templates.list_by_resource_group(scope.resource_group)
                if scope.resource_group
                else templates.list()
            )
            for item in pages:
                yield shapes.template(item.as_dict())

    def get_template(self, template_id: TemplateId) -> ImageTemplate:
        parsed = resource_ids.parse(template_id)
        with translated(f"get image template {parsed.name}"):
            body = self._templates(parsed.subscription_id).get(parsed.resource_group, parsed.name).as_dict()
        return shapes.template(body)

    def start_run(self, template_id: TemplateId) -> None:
        parsed = resource_ids.parse(template_id)
        with translated(f"run image template {parsed.name}"):
            # polling=False: AIB runs take hours; the reconciler follows them on later passes.
            self._templates(parsed.subscription_id).begin_run(
                parsed.resource_group, parsed.name, polling=False
            )

    def cancel_run(self, template_id: TemplateId) -> None:
        parsed = resource_ids.parse(template_id)
        with translated(f"cancel the run of image template {parsed.name}"):
            self._templates(parsed.subscription_id).begin_cancel(
                parsed.resource_group, parsed.name, polling=False
            )

    def delete_template(self, template_id: TemplateId) -> None:
        parsed = resource_ids.parse(template_id)
        with translated(f"delete image template {parsed.name}"):
            self._templates(parsed.subscription_id).begin_delete(
                parsed.resource_group, parsed.name, polling=False
            )

    def create_template(self, template_id: TemplateId, definition: TemplateDefinition) -> None:
        parsed = resource_ids.parse(template_id)
        with translated(f"create image template {parsed.name}"):
            # A JSON body, sent as the definition was read: nothing the SDK model does not know is lost.
            self._templates(parsed.subscription_id).begin_create_or_update(
                parsed.resource_group, parsed.name, definition.body, polling=False
            )

    def list_run_outputs(self, template_id: TemplateId) -> list[RunOutput]:
        parsed = resource_ids.parse(template_id)
        with translated(f"list run outputs of image template {parsed.name}"):
            outputs = self._templates(parsed.subscription_id).list_run_outputs(
                parsed.resource_group, parsed.name
            )
            return [shapes.run_output(o.as_dict()) for o in outputs]
