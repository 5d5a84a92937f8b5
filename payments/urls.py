from django.urls import path

from payments import views

urlpatterns = [
    path("payments/callback/<str:provider>/", views.callback, name="payment-callback"),
    path("pay/sandbox/<str:token>/", views.sandbox_gateway, name="sandbox-gateway"),
]
