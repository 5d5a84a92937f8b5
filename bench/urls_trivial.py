"""Baseline urlconf for the category-page benchmark: the cheapest view behind the same middleware."""

from django.http import HttpResponse
from django.urls import path


def ok(request):
    return HttpResponse("ok")


urlpatterns = [path("", ok)]
