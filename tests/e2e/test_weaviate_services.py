"""graphs/services.py with a Weaviate library on a live server (the session fixture
``weaviate_server``; skips with the reason when there is none)."""

from __future__ import annotations

from dynagraph.graphs.services import Services
from dynagraph.graphs.settings import load_settings
from dynagraph.tools.library.weaviate_connect import connect


def test_a_weaviate_library_is_opened_by_the_search_not_by_a_hint(
    tmp_path, monkeypatch, weaviate_server
) -> None:
    """Against a live server: the planner's hint never connects a Weaviate library (a server
    that is down would be tried twice, by the hint and then by the search), so the function
    collection does not exist until the search opens the library."""
    monkeypatch.setenv("DYNAGRAPH_HOME", str(tmp_path))
    text = "Sales per region are in sales.csv."
    with weaviate_server.fresh_collection("DynagraphHint") as name:
        settings = load_settings(
            None,
            **{
                "executor.pool_size": 0,
                "library.backend": "weaviate",
                "library.weaviate": weaviate_server.library_mapping(collection=name),
            },
        )
        services = Services(settings)
        client = connect(weaviate_server.config())
        try:
            services._prepare_search(text)  # the job prepare_search_ahead queues
            assert not client.collections.exists(name)
            services.library.search("sales", k=1)  # the search opens it
            assert client.collections.exists(name)
        finally:
            client.close()
            services.close()
