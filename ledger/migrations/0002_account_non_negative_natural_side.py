"""Re-create the balance check on each account's natural side.

Databases created before the rule followed the normal side of the account carry the older
`may_go_negative OR balance >= 0` check under the same name; dropping and adding it again brings
every database to the current definition (a no-op in effect on new ones).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [
        migrations.RemoveConstraint(model_name="account", name="account_non_negative"),
        migrations.AddConstraint(
            model_name="account",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("may_go_negative", True),
                    models.Q(("balance__gte", 0), ("kind__in", ["asset", "expense"])),
                    models.Q(("balance__lte", 0), ("kind__in", ["liability", "equity", "revenue"])),
                    _connector="OR",
                ),
                name="account_non_negative",
            ),
        ),
    ]
