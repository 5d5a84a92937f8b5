from django.apps import AppConfig


class ProviderConfig(AppConfig):
    name = "branch_api.provider"
    label = "branch_provider"
    verbose_name = "Branch API (Site A)"

    def ready(self):
        from branch_api.provider.callers import callers_signals_connect

        callers_signals_connect()
