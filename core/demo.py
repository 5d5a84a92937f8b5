"""Demo catalogs for `manage.py seed_demo`: categories, products, vault stock and paid orders per shop.

Everything goes through the same services the shop uses (code import, order placement, sandbox payment
callback), so the demo shows real ledger entries and delivered orders. Each shop is seeded in one
transaction and every step looks its rows up by a natural key first (slug, SKU, code digest, the
customer's e-mail), so a second run changes nothing and an older demo database is completed in place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django_tenants.utils import tenant_context

from catalog.models import Brand, Category, PriceList, PriceRule, Product, Spec, SpecValue, Variant, WholesaleTier
from catalog.pricing import money

# --- What the demo shops sell -----------------------------------------------------------------------

AUTOMATIC = Product.DeliveryMode.AUTOMATIC
MANUAL = Product.DeliveryMode.MANUAL
KEY_ALPHABET = "BCDFGHJKMPQRTVWXY2346789"  # product keys avoid vowels and look-alikes


@dataclass(frozen=True)
class VariantSpec:
    sku: str
    name: str
    price: Decimal
    cost: Decimal
    values: tuple[str, ...] = ()  # one value per product spec, in spec order
    codes: int = 0  # demo codes stocked in the vault
    tiers: tuple[tuple[int, Decimal], ...] = ()  # wholesale breaks: (from quantity, unit price)


@dataclass(frozen=True)
class ProductSpec:
    slug: str
    name: str
    category: str  # category slug
    brand: str  # brand name
    description: str
    variants: tuple[VariantSpec, ...]
    specs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    delivery_mode: str = AUTOMATIC
    checkout_fields: tuple[dict, ...] = ()
    code_style: str = "voucher"  # voucher: STM-US-25-0001-7F3A · key: XXXXX-XXXXX-… · pin: voucher|PIN
    max_uses: int | None = None  # set for reusable codes (e.g. a volume licence key)


@dataclass(frozen=True)
class OrderSpec:
    email: str
    sku: str
    quantity: int = 1
    checkout_input: dict = field(default_factory=dict)
    fulfilment_note: str = ""  # manual goods: staff marks it done with this note


@dataclass(frozen=True)
class ShopDemo:
    categories: tuple[tuple[str, str, str, tuple[tuple[str, str, str], ...]], ...]  # slug, name, icon, children
    products: tuple[ProductSpec, ...]
    orders: tuple[OrderSpec, ...] = ()
    markup_category: str = ""  # a default price list with a +15% rule on this category


BRANDS = {
    "Steam": "steam",
    "Apple": "apple",
    "Google Play": "google-play",
    "PUBG Mobile": "pubg-mobile",
    "Razer Gold": "razer-gold",
    "Tencent": "tencent",
    "Microsoft": "microsoft",
    "Kaspersky": "kaspersky",
    "NordVPN": "nordvpn",
    "Spotify": "spotify",
    "Netflix": "netflix",
}

CATEGORIES = (
    (
        "gift-cards",
        "Gift cards",
        "🎁",
        (("steam", "Steam", "🎮"), ("apple", "Apple", "🍎"), ("google-play", "Google Play", "▶️")),
    ),
    (
        "game-top-ups",
        "Game top-ups",
        "🕹️",
        (("pubg-mobile", "PUBG Mobile", "🪖"), ("razer-gold", "Razer Gold", "🐍"), ("tencent-qq", "腾讯 QQ", "🐧")),
    ),
    (
        "software-licences",
        "Software licences",
        "💻",
        (("windows-office", "Windows & Office", "🪟"), ("security-vpn", "Security & VPN", "🛡️")),
    ),
    ("streaming", "Streaming & music", "📺", (("spotify", "Spotify", "🎵"), ("netflix", "Netflix", "🎬"))),
)

D = Decimal
STEAM_REGIONS = (("US", "$", D("1.00")), ("EU", "€", D("1.09")), ("UK", "£", D("1.27")))  # face value in USD


def _steam_variants() -> tuple[VariantSpec, ...]:
    """Region × Denomination: nine variants, priced from face value at 4% over, bought at 6% under."""
    variants = []
    for region, symbol, rate in STEAM_REGIONS:
        for face in (10, 25, 50):
            price, cost = money(face * rate * D("1.04")), money(face * rate * D("0.94"))
            tiers = ()
            if region == "US" and face >= 25:
                tiers = ((5, money(price * D("0.98"))), (10, money(price * D("0.96"))))
            variants.append(
                VariantSpec(
                    sku=f"STM-{region}-{face}",
                    name=f"{region} / {symbol}{face}",
                    price=price,
                    cost=cost,
                    values=(region, str(face)),
                    codes=30,
                    tiers=tiers,
                )
            )
    return tuple(variants)


def _denominations(prefix: str, faces: tuple[int, ...], *, codes: int, over: str = "1.03", under: str = "0.95"):
    return tuple(
        VariantSpec(
            sku=f"{prefix}-{face}",
            name=f"${face}",
            price=money(face * D(over)),
            cost=money(face * D(under)),
            values=(str(face),),
            codes=codes,
        )
        for face in faces
    )


STEAM = ProductSpec(
    slug="steam-wallet-gift-card",
    name="Steam Wallet Gift Card",
    category="steam",
    brand="Steam",
    description="Add funds to a Steam Wallet. Choose the card's region: it must match the Steam account's region.",
    specs=(("Region", ("US", "EU", "UK")), ("Denomination", ("10", "25", "50"))),
    variants=_steam_variants(),
)
APPLE = ProductSpec(
    slug="apple-gift-card-us",
    name="Apple Gift Card (US)",
    category="apple",
    brand="Apple",
    description="For apps, games, music, iCloud+ and more on a US Apple Account.",
    specs=(("Denomination", ("10", "25", "50")),),
    variants=_denominations("APL-US", (10, 25, 50), codes=25),
)
GOOGLE_PLAY = ProductSpec(
    slug="google-play-gift-card-us",
    name="Google Play Gift Card (US)",
    category="google-play",
    brand="Google Play",
    description="Redeem on a US Google account for apps, games and in-app purchases.",
    specs=(("Denomination", ("10", "25")),),
    variants=_denominations("GPL-US", (10, 25), codes=25),
)
PUBG_TOP_UP = ProductSpec(
    slug="pubg-mobile-uc-top-up",
    name="PUBG Mobile UC — direct top-up",
    category="pubg-mobile",
    brand="PUBG Mobile",
    description="We top up the UC straight to your player ID, usually within 15 minutes.",
    delivery_mode=MANUAL,
    checkout_fields=({"name": "account", "label": "Account to top up", "required": True},),
    specs=(("Amount", ("60 UC", "325 UC", "660 UC")),),
    variants=(
        VariantSpec("PUBG-UC-60", "60 UC", D("0.99"), D("0.85"), ("60 UC",)),
        VariantSpec("PUBG-UC-325", "325 UC", D("4.99"), D("4.25"), ("325 UC",)),
        VariantSpec("PUBG-UC-660", "660 UC", D("9.99"), D("8.50"), ("660 UC",)),
    ),
)
RAZER_GOLD = ProductSpec(
    slug="razer-gold-pin-global",
    name="Razer Gold PIN (Global)",
    category="razer-gold",
    brand="Razer Gold",
    description="A serial number and PIN to reload Razer Gold, accepted by thousands of games.",
    specs=(("Denomination", ("10", "25")),),
    variants=_denominations("RZG", (10, 25), codes=20, over="1.05", under="0.94"),
    code_style="pin",
)
QQ_COINS = ProductSpec(
    slug="qq-coins-100",
    name="腾讯Q币 100",
    category="tencent-qq",
    brand="Tencent",
    description="100 Q币 充值卡密, for QQ services and Tencent games.",
    variants=(VariantSpec("QQB-100", "100 Q币", D("14.49"), D("13.60"), codes=30),),
)
WINDOWS = ProductSpec(
    slug="windows-11-pro",
    name="Windows 11 Pro — retail key",
    category="windows-office",
    brand="Microsoft",
    description="One activation of Windows 11 Pro, transferable to a new PC.",
    variants=(VariantSpec("WIN11-PRO", "1 PC", D("29.90"), D("12.00"), codes=20),),
    code_style="key",
)
OFFICE_MAK = ProductSpec(
    slug="office-2021-pro-plus-volume",
    name="Office 2021 Professional Plus — volume key",
    category="windows-office",
    brand="Microsoft",
    description="A volume licence key shared by up to 50 activations; each purchase is one activation.",
    variants=(VariantSpec("OFF21-PP-MAK", "1 activation", D("19.90"), D("2.50"), codes=2),),
    code_style="key",
    max_uses=50,
)
KASPERSKY = ProductSpec(
    slug="kaspersky-total-security",
    name="Kaspersky Total Security — 1 year",
    category="security-vpn",
    brand="Kaspersky",
    description="Antivirus, firewall and password manager for Windows, macOS and Android.",
    specs=(("Devices", ("1", "3")),),
    variants=(
        VariantSpec("KTS-1D-1Y", "1 device", D("24.90"), D("9.80"), ("1",), codes=20),
        VariantSpec("KTS-3D-1Y", "3 devices", D("39.90"), D("16.50"), ("3",), codes=20),
    ),
    code_style="key",
)
NORDVPN = ProductSpec(
    slug="nordvpn-1-year",
    name="NordVPN — 1 year",
    category="security-vpn",
    brand="NordVPN",
    description="Twelve months of NordVPN on up to 10 devices.",
    variants=(VariantSpec("NVPN-1Y", "12 months", D("59.00"), D("38.00"), codes=20),),
)
SPOTIFY = ProductSpec(
    slug="spotify-premium",
    name="Spotify Premium",
    category="spotify",
    brand="Spotify",
    description="Ad-free music; the code extends an existing or new Premium Individual plan.",
    specs=(("Duration", ("1 month", "3 months")),),
    variants=(
        VariantSpec("SPT-1M", "1 month", D("10.99"), D("9.20"), ("1 month",), codes=20),
        VariantSpec("SPT-3M", "3 months", D("31.99"), D("27.00"), ("3 months",), codes=20),
    ),
)
NETFLIX = ProductSpec(
    slug="netflix-gift-card-us",
    name="Netflix Gift Card (US)",
    category="netflix",
    brand="Netflix",
    description="Pay for a US Netflix plan without a credit card.",
    specs=(("Denomination", ("25", "50")),),
    variants=_denominations("NFX-US", (25, 50), codes=20),
)

FULL_CATALOG = (
    STEAM,
    APPLE,
    GOOGLE_PLAY,
    PUBG_TOP_UP,
    RAZER_GOLD,
    QQ_COINS,
    WINDOWS,
    OFFICE_MAK,
    KASPERSKY,
    NORDVPN,
    SPOTIFY,
    NETFLIX,
)

DEMO_ORDERS = (
    OrderSpec("mia.chen@example.com", "STM-US-25"),
    OrderSpec("lucas.martin@example.com", "STM-EU-50", 2),
    OrderSpec("reseller@example.net", "STM-US-25", 10),  # priced by the 10+ wholesale tier
    OrderSpec("sofia.rossi@example.com", "OFF21-PP-MAK"),  # one use of a reusable key
    OrderSpec("wang.lei@example.cn", "QQB-100", 3),
    OrderSpec("noah.weber@example.de", "RZG-25"),
    OrderSpec(
        "jamal.idris@example.com",
        "PUBG-UC-325",
        checkout_input={"account": "5123456789"},
        fulfilment_note="Topped up 325 UC to player 5123456789.",
    ),
    OrderSpec("emma.jones@example.co.uk", "PUBG-UC-660", checkout_input={"account": "5987654321"}),  # staff queue
)

SITE_A = ShopDemo(categories=CATEGORIES, products=FULL_CATALOG, orders=DEMO_ORDERS)
# alpha sells its own stock of everything but software licences, which it buys from Site A (demo_network).
ALPHA_OWN = tuple(p for p in FULL_CATALOG if p not in (WINDOWS, OFFICE_MAK, KASPERSKY, NORDVPN))
ALPHA = ShopDemo(
    categories=CATEGORIES[:2] + CATEGORIES[3:],
    products=ALPHA_OWN,
    orders=tuple(o for o in DEMO_ORDERS if any(o.sku == v.sku for p in ALPHA_OWN for v in p.variants)),
    markup_category="game-top-ups",
)
BETA = ShopDemo(
    categories=(CATEGORIES[0],),
    products=(
        ProductSpec(
            slug="steam-wallet-gift-card-us",
            name="Steam Wallet Gift Card (US)",
            category="steam",
            brand="Steam",
            description="Add funds to a US Steam Wallet.",
            specs=(("Denomination", ("10", "25")),),
            variants=_denominations("STM-US", (10, 25), codes=20, over="1.04", under="0.94"),
        ),
        GOOGLE_PLAY,
    ),
)


# --- Seeding, one shop at a time ----------------------------------------------------------------------


def demo_site_a_seed(*, staff_email: str) -> None:
    """Site A's own shop: the full catalog, stock and a few delivered orders."""
    from tenants.models import Branch

    _shop_seed(Branch.objects.get(schema_name=settings.PUBLIC_SCHEMA_NAME), SITE_A, staff_email=staff_email)


def demo_alpha_seed(*, staff_email: str) -> None:
    """Branch alpha: the full catalog, a default price list marking game top-ups up 15%, orders."""
    from tenants.models import Branch

    _shop_seed(Branch.objects.get(slug="alpha"), ALPHA, staff_email=staff_email)


def demo_beta_seed(*, staff_email: str) -> None:
    """Branch beta: a small catalog with stock, no orders."""
    from tenants.models import Branch

    _shop_seed(Branch.objects.get(slug="beta"), BETA, staff_email=staff_email)


def _shop_seed(branch, demo: ShopDemo, *, staff_email: str) -> None:
    with tenant_context(branch), transaction.atomic():
        staff = get_user_model().objects.filter(email__iexact=staff_email).first()
        categories = _categories_ensure(demo.categories)
        brands = {name: _brand_ensure(name) for name in {p.brand for p in demo.products}}
        variants: dict[str, Variant] = {}
        for sort_order, spec in enumerate(demo.products):
            product = _product_ensure(spec, categories[spec.category], brands[spec.brand], sort_order)
            for variant_spec, variant in _variants_ensure(product, spec):
                variants[variant_spec.sku] = variant
                _stock_ensure(variant, variant_spec, spec, shop=branch.schema_name, staff=staff)
        if demo.markup_category:
            _price_list_ensure(categories[demo.markup_category])
        for order_spec in demo.orders:
            _order_ensure(order_spec, variants[order_spec.sku], staff=staff)


def _categories_ensure(tree) -> dict[str, Category]:
    found: dict[str, Category] = {}
    for root_order, (slug, name, icon, children) in enumerate(tree):
        root, _ = Category.objects.get_or_create(
            slug=slug, defaults={"name": name, "icon": icon, "sort_order": root_order}
        )
        found[slug] = root
        for child_order, (child_slug, child_name, child_icon) in enumerate(children):
            found[child_slug], _ = Category.objects.get_or_create(
                slug=child_slug,
                defaults={"name": child_name, "icon": child_icon, "parent": root, "sort_order": child_order},
            )
    return found


def _brand_ensure(name: str) -> Brand:
    slug = BRANDS[name]
    brand = Brand.objects.filter(slug=slug).first() or Brand.objects.filter(name=name).first()
    return brand or Brand.objects.create(name=name, slug=slug)


def _product_ensure(spec: ProductSpec, category: Category, brand: Brand, sort_order: int) -> Product:
    product, _ = Product.objects.get_or_create(
        slug=spec.slug,
        defaults={
            "name": spec.name,
            "category": category,
            "brand": brand,
            "description": spec.description,
            "delivery_mode": spec.delivery_mode,
            "checkout_fields": list(spec.checkout_fields),
            "sort_order": sort_order,
        },
    )
    return product


def _variants_ensure(product: Product, spec: ProductSpec) -> list[tuple[VariantSpec, Variant]]:
    values: list[dict[str, SpecValue]] = []
    for spec_order, (spec_name, spec_values) in enumerate(spec.specs):
        dimension, _ = Spec.objects.get_or_create(product=product, name=spec_name, defaults={"sort_order": spec_order})
        values.append(
            {
                value: SpecValue.objects.get_or_create(spec=dimension, value=value, defaults={"sort_order": i})[0]
                for i, value in enumerate(spec_values)
            }
        )
    result = []
    for sort_order, variant_spec in enumerate(spec.variants):
        variant, created = Variant.objects.get_or_create(
            sku=variant_spec.sku,
            defaults={
                "product": product,
                "name": variant_spec.name,
                "price": variant_spec.price,
                "cost": variant_spec.cost,
                "sort_order": sort_order,
            },
        )
        if variant.product_id == product.pk and (created or not variant.spec_values.exists()):
            variant.spec_values.add(*(values[i][value] for i, value in enumerate(variant_spec.values)))
        for min_quantity, unit_price in variant_spec.tiers:
            WholesaleTier.objects.get_or_create(
                variant=variant, min_quantity=min_quantity, defaults={"unit_price": unit_price}
            )
        result.append((variant_spec, variant))
    return result


def _demo_codes(prefix: str, count: int, *, shop: str, style: str = "voucher") -> list[str]:
    """Deterministic fake codes, one import line each (``code`` or ``code|PIN``), different per shop."""
    lines = []
    for number in range(1, count + 1):
        digest = hashlib.sha256(f"{shop}|{prefix}|{number}".encode()).digest()
        if style == "key":
            symbols = "".join(KEY_ALPHABET[byte % len(KEY_ALPHABET)] for byte in digest[:25])
            lines.append("-".join(symbols[i : i + 5] for i in range(0, 25, 5)))
            continue
        code = f"{prefix}-{number:04d}-{digest[:2].hex().upper()}"
        if style == "pin":
            code += f"|{int.from_bytes(digest[2:8], 'big') % 10**10:010d}"
        lines.append(code)
    return lines


def _stock_ensure(variant: Variant, variant_spec: VariantSpec, spec: ProductSpec, *, shop: str, staff) -> None:
    """Import the variant's demo codes through the vault; codes already there (even sold) are skipped."""
    from cardvault.models import ImportBatch
    from cardvault.services import codes_parse_text, import_commit, import_preview

    if not variant_spec.codes:
        return
    parsed = codes_parse_text("\n".join(_demo_codes(variant.sku, variant_spec.codes, shop=shop, style=spec.code_style)))
    if import_preview(parsed).new == 0:
        return
    import_commit(
        variant=variant,
        parsed=parsed,
        unit_cost=variant_spec.cost,
        source=ImportBatch.Source.PASTE,
        reusable=spec.max_uses is not None,
        max_uses=spec.max_uses,
        note="demo stock",
        actor=staff,
    )


def _price_list_ensure(category: Category) -> None:
    """The storefront's default price list (an existing default is kept) with a +15% category rule."""
    price_list = PriceList.objects.filter(is_default=True).first()
    if price_list is None:
        price_list, _ = PriceList.objects.get_or_create(
            code="storefront", defaults={"name": "Storefront prices", "is_default": True}
        )
    PriceRule.objects.get_or_create(
        price_list=price_list,
        scope=PriceRule.Scope.CATEGORY,
        category=category,
        defaults={
            "mode": PriceRule.Mode.PERCENT_MARKUP,
            "value": Decimal("15"),
            "rounding": PriceRule.Rounding.ENDING_99,
        },
    )


def _order_ensure(spec: OrderSpec, variant: Variant, *, staff) -> None:
    """Place and pay one order the way a customer does: order, sandbox payment, signed callback."""
    from orders.models import Order
    from orders.services import CartItem, order_fulfil_manually, order_place
    from payments.providers.sandbox import SandboxProvider
    from payments.services import payment_callback_handle, payment_start

    if Order.objects.filter(email=spec.email).exists():
        return
    order = order_place(
        items=[CartItem(variant_id=variant.pk, quantity=spec.quantity, checkout_input=spec.checkout_input)],
        email=spec.email,
        client_ip="127.0.0.1",
    )
    attempt, _url = payment_start(order=order, provider_code="sandbox")
    accepted, reason = payment_callback_handle(
        provider_code="sandbox", data=SandboxProvider().notification(attempt=attempt), remote_ip="127.0.0.1"
    )
    if not accepted:
        raise RuntimeError(f"demo payment for {spec.sku} was refused: {reason}")
    if spec.fulfilment_note:
        order_fulfil_manually(order_id=order.pk, actor=staff, note=spec.fulfilment_note)
