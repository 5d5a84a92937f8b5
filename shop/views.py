from django.shortcuts import render


def home(request):
    """The storefront home of the current schema (Site A's own shop or a branch)."""
    return render(request, "shop/home.html")
