from django.urls import path

from shop import views

urlpatterns = [
    path("", views.home, name="home"),
    path("c/<str:slug>/", views.category, name="category"),
    path("p/<str:slug>/", views.product, name="product"),
    path("p/<str:slug>/buy/", views.buy, name="buy"),
    path("search/", views.search, name="search"),
    path("orders/lookup/", views.order_lookup, name="order-lookup"),
    path("orders/mine/", views.my_orders, name="my-orders"),
    path("account/wallet/", views.wallet, name="wallet"),
    path("orders/<str:number>/", views.order_detail, name="order-detail"),
    path("orders/<str:number>/status", views.order_status, name="order-status"),
    path("orders/<str:number>/codes.txt", views.order_codes_txt, name="order-codes-txt"),
    path("orders/<str:number>/pay/", views.order_pay, name="order-pay"),
    path("orders/<str:number>/forget/", views.order_forget, name="order-forget"),
]
