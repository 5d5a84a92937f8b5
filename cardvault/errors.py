from django.utils.translation import gettext_lazy as _

from core.errors import DomainError


class OutOfStock(DomainError):
    code = "out_of_stock"
    default_message = _("Sorry, this item is sold out.")


class ImportInvalid(DomainError):
    code = "import_invalid"
    default_message = _("The file could not be read as codes.")
