from __future__ import annotations

from django.apps import AppConfig


class ClustersConfig(AppConfig):
    name = "clusters"
    verbose_name = "Clusters"

    def ready(self) -> None:
        # DRF's generic base classes (ModelSerializer[Pod], GenericViewSet[Node]) subscriptable at
        # runtime, as djangorestframework-stubs types them; before clusters.api and .serializers load.
        import django_stubs_ext
        from django.contrib.auth.models import User
        from rest_framework import fields, generics, relations, serializers, viewsets

        django_stubs_ext.monkeypatch(
            extra_classes=[
                fields.Field,
                relations.RelatedField,
                serializers.BaseSerializer,
                generics.GenericAPIView,
                viewsets.GenericViewSet,
            ]
        )
        # New usernames must serve as Eru's gRPC credential key (clusters.principals).
        from clusters import principals

        User._meta.get_field("username").validators.append(principals.validate_username)
