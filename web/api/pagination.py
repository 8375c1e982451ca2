"""Pagination of the API's lists: numbered pages, 20 items by default, at most 100."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from web.api.fields import QueryIntegerField

DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 100


class PageQuerySerializer(serializers.Serializer[dict[str, Any]]):
    """`page` and `page_size` as the schema states them: integers, refused (400) otherwise."""

    page = QueryIntegerField(required=False, min_value=1)
    page_size = QueryIntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)


class PagePagination(PageNumberPagination):
    """`?page=N&page_size=M`: answers {"count", "next", "previous", "results"}.

    Both are checked, not bent: a page or page size that is not an integer, or out of its
    range (page >= 1, 1 <= page_size <= 100), is 400 INVALID_ARGUMENT naming the parameter;
    a page past the last is 404 NOT_FOUND (web/api/README.md).
    """

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    # The schema says `page` is an integer: DRF's "last" would be a value it does not state.
    last_page_strings = ()
    invalid_page_message = "There is no page {page_number}."

    def _query(self, request: Request) -> dict[str, Any]:
        query = PageQuerySerializer(
            data={
                name: request.query_params[name]
                for name in ("page", "page_size")
                if name in request.query_params
            }
        )
        query.is_valid(raise_exception=True)
        return dict(query.validated_data)

    def get_page_size(self, request: Request) -> int:
        """Returns `page_size`, or the default; raises ValidationError (400) for a bad one."""
        return int(self._query(request).get("page_size", self.page_size))

    def get_page_number(self, request: Request, paginator: Paginator[Any]) -> int:
        """Returns `page`, or 1; raises ValidationError (400) for a bad one."""
        return int(self._query(request).get("page", 1))

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        """Returns the two parameters as the API checks them, ranges included."""
        return [
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "A page number, from 1 (the default). Not an integer, or below "
                "1: 400 INVALID_ARGUMENT; past the last page: 404 NOT_FOUND.",
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Items per page, from 1 to {MAX_PAGE_SIZE} (default "
                f"{DEFAULT_PAGE_SIZE}). Not an integer, or out of that range: 400 "
                "INVALID_ARGUMENT.",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_PAGE_SIZE,
                    "default": DEFAULT_PAGE_SIZE,
                },
            },
        ]


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
