from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from clusters import login_views
from clusters.api import metrics_view, router
from clusters.api_tokens import token_view

urlpatterns = [
    path("admin/login/", login_views.admin_login),  # before the admin's own: attempts are counted
    path("admin/", admin.site.urls),
    path("login/", login_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/auth/token/", token_view, name="api-token"),
    path("api/", include(router.urls)),
    path("metrics", metrics_view, name="metrics"),
    path("", include("clusters.urls")),
]
