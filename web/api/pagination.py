"""Pagination of the API's lists: numbered pages, 20 items by default, at most 100."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import Model, QuerySet
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class PagePagination(PageNumberPagination):
    """`?page=N&page_size=M`: answers {"count", "next", "previous", "results"}."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100
    invalid_page_message = "There is no page {page_number}."


def paginated_response(
    *,
    serializer_class: type[serializers.BaseSerializer[Any]],
    items: QuerySet[Model] | Sequence[Any],
    request: Request,
    view: APIView,
    context: dict[str, Any] | None = None,
) -> Response:
    """Returns one page of `items`, serialised, with the links to the pages around it."""
    paginator = PagePagination()
    page = paginator.paginate_queryset(items, request, view=view)
    serializer = serializer_class(page, many=True, context=context or {"request": request})
    return paginator.get_paginated_response(serializer.data)
