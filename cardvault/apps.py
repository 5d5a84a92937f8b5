from django.apps import AppConfig


class CardvaultConfig(AppConfig):
    name = "cardvault"
    verbose_name = "Code vault"
