from django.apps import AppConfig


class UpstreamConfig(AppConfig):
    name = "branch_api.upstream"
    label = "branch_upstream"
    verbose_name = "Upstream (Site A connection)"
