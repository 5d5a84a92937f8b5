import json

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from tenants.services import branch_provision


class Command(BaseCommand):
    help = "Create a branch shop (schema cloned from the template, owner superuser, domain). Safe to re-run."

    def add_arguments(self, parser):
        parser.add_argument("--slug", required=True, help="subdomain, e.g. alpha")
        parser.add_argument("--name", required=True, help="shop name")
        parser.add_argument("--owner-email", required=True)
        parser.add_argument("--password", default=None, help="owner password (omit for a password-reset login)")
        parser.add_argument("--currency", default=None)

    def handle(self, *args, **options):
        try:
            result = branch_provision(
                slug=options["slug"],
                name=options["name"],
                owner_email=options["owner_email"],
                password=options["password"],
                currency=options["currency"],
            )
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(json.dumps(result.as_dict()))
