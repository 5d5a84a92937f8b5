from core.errors import DomainError


class OutOfStock(DomainError):
    code = "out_of_stock"
    default_message = "Sorry, this item is sold out."


class ImportInvalid(DomainError):
    code = "import_invalid"
    default_message = "The file could not be read as codes."
