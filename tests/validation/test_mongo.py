"""MongoDB suites: documents read in chunks with a projection, one GX run per chunk, counts
summed; demo documents pass, broken ones are reported with their _id (mongomock)."""

from __future__ import annotations

from datetime import UTC, datetime

import mongomock
import pytest

from steward.demo import generate_demo_documents
from steward.storage import DocumentsClient
from steward.validation import load_suites, plan_validation, run_mongo_suite
from steward.validation.plan import suite_parameters
from tests.validation.conftest import EXPECTATIONS


@pytest.fixture
def documents(make_settings):
    settings = make_settings(
        documents__url="mongodb://localhost:27017",
        validation__expectations_dir=str(EXPECTATIONS),
        validation__mongo_chunk_size="100",
    )
    client = DocumentsClient(settings, client=mongomock.MongoClient())
    return settings, client


def reviews_suite():
    return load_suites(EXPECTATIONS, ["product_reviews"])[0]


def test_demo_reviews_pass_in_several_chunks(documents) -> None:
    settings, client = documents
    generate_demo_documents(client.db, count=1200, seed=3)
    total = client.collection("product_reviews").count_documents({})
    assert total > 100  # more than one chunk
    outcome = run_mongo_suite(reviews_suite(), settings, suite_parameters(settings), client=client)
    assert outcome.status == "passed", outcome.failed
    rating = next(e for e in outcome.expectations if e.name == "rating_within_1_5")
    assert rating.element_count == total  # counts summed over the chunks


def test_broken_reviews_are_counted_across_chunks_with_their_ids(documents) -> None:
    settings, client = documents
    reviews = client.collection("product_reviews")
    now = datetime.now(UTC)
    reviews.insert_many(
        [
            {"_id": i, "product_id": 1, "user_id": 1, "rating": 4, "created_at": now}
            for i in range(250)
        ]
    )
    reviews.update_many({"_id": {"$in": [5, 150, 240]}}, {"$set": {"rating": 9}})
    reviews.update_one({"_id": 7}, {"$set": {"deleted_at": now}})  # deleted_by missing
    outcome = run_mongo_suite(reviews_suite(), settings, suite_parameters(settings), client=client)
    failed = {e.name: e for e in outcome.failed}
    assert failed["rating_within_1_5"].unexpected_count == 3
    assert sorted(failed["rating_within_1_5"].sample) == [5, 150, 240]
    assert failed["deleted_by_when_deleted"].unexpected_count == 1
    assert failed["deleted_by_when_deleted"].sample == [7]
    assert outcome.status == "failed"


def test_mongo_suites_are_skipped_with_the_reason_without_documents_url(make_settings) -> None:
    settings = make_settings(validation__expectations_dir=str(EXPECTATIONS))
    plan = plan_validation(settings, ["product_reviews"])
    assert plan.suites == [] and plan.skipped == {"product_reviews": "documents.url is not set"}
