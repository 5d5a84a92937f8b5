from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from branch_api.provider import api

urlpatterns = [
    path("ping", api.Ping.as_view(), name="branch-api-ping"),
    path("categories", api.Categories.as_view(), name="branch-api-categories"),
    path("products", api.Products.as_view(), name="branch-api-products"),
    path("changes", api.Changes.as_view(), name="branch-api-changes"),
    path("orders", api.Orders.as_view(), name="branch-api-orders"),
    path("orders/<str:reference>", api.OrderDetail.as_view(), name="branch-api-order"),
    path("balance", api.Balance.as_view(), name="branch-api-balance"),
    path("top-ups", api.TopUps.as_view(), name="branch-api-top-ups"),
    path("statement", api.Statement.as_view(), name="branch-api-statement"),
    path("webhook-endpoints", api.WebhookEndpoints.as_view(), name="branch-api-webhook-endpoints"),
    path(
        "webhook-endpoints/<str:endpoint_id>", api.WebhookEndpointDetail.as_view(), name="branch-api-webhook-endpoint"
    ),
    path(
        "webhook-endpoints/<str:endpoint_id>/test",
        api.WebhookEndpointTest.as_view(),
        name="branch-api-webhook-endpoint-test",
    ),
    path(
        "webhook-endpoints/<str:endpoint_id>/deliveries",
        api.WebhookEndpointDeliveries.as_view(),
        name="branch-api-webhook-deliveries",
    ),
    path("deliveries/<str:delivery_id>/replay", api.WebhookDeliveryReplay.as_view(), name="branch-api-delivery-replay"),
    re_path(r"", csrf_exempt(api.endpoint_not_found)),
]
