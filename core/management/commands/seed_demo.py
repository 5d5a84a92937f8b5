"""Idempotent demo data: Site A, branches alpha and beta, logins for each, and their demo catalogs
(categories, products, vault stock, paid orders; see ``core.demo``)."""

import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django_tenants.utils import schema_context

from core.demo import demo_alpha_seed, demo_beta_seed, demo_site_a_seed
from core.demo_network import demo_network_seed
from tenants.services import branch_provision, branch_url, platform_tenant_ensure

DEMO_ADMIN = ("admin@cardmesh.local", "cardmesh-admin-demo")
DEMO_BRANCHES = [
    ("alpha", "Alpha Cards", "owner@alpha.local", "alpha-owner-demo"),
    ("beta", "Beta Codes", "owner@beta.local", "beta-owner-demo"),
]
DEMO_CATALOGS = {"alpha": demo_alpha_seed, "beta": demo_beta_seed}


def demo_admin_ensure(email: str, password: str) -> None:
    from allauth.account.models import EmailAddress

    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        user = get_user_model().objects.filter(email=email).first() or get_user_model()(username=email, email=email)
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        EmailAddress.objects.update_or_create(user=user, email=email, defaults={"verified": True, "primary": True})


class Command(BaseCommand):
    help = "Seed the demo (Site A, branches alpha and beta, demo logins and catalogs). Safe to run repeatedly."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print a JSON summary")

    def handle(self, *args, **options):
        platform_tenant_ensure()
        demo_admin_ensure(*DEMO_ADMIN)
        demo_site_a_seed(staff_email=DEMO_ADMIN[0])
        shops = [
            {
                "name": settings.PLATFORM_NAME,
                "url": branch_url(settings.PLATFORM_DOMAIN),
                "admin": branch_url(settings.PLATFORM_DOMAIN, "/admin/"),
                "login": DEMO_ADMIN[0],
                "password": DEMO_ADMIN[1],
            }
        ]
        for slug, name, email, password in DEMO_BRANCHES:
            result = branch_provision(slug=slug, name=name, owner_email=email, password=password)
            if slug in DEMO_CATALOGS:
                DEMO_CATALOGS[slug](staff_email=email)
            shops.append(
                {
                    "name": name,
                    "url": branch_url(result.domain),
                    "admin": branch_url(result.domain, "/admin/"),
                    "login": email,
                    "password": password,
                }
            )
        demo_network_seed()
        if options["json"]:
            self.stdout.write(json.dumps(shops))
            return
        for shop in shops:
            self.stdout.write(
                f"{shop['name']:<14} {shop['url']:<34} admin {shop['admin']}  "
                f"login {shop['login']} / {shop['password']}"
            )
