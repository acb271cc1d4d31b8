"""Drives the sandbox with HubSpot's official Python client (hubspot-api-client), unchanged.

Usage: python official_client.py BASE_URL
Exits non-zero (with the failing check) if any behaviour differs from what the client expects.
"""

import sys
import urllib.parse
import urllib.request

import hubspot
from hubspot.crm.companies import (
    BatchInputSimplePublicObjectBatchInputForCreate as CompanyBatchCreate,
    SimplePublicObjectBatchInputForCreate as CompanyBatchItem,
    SimplePublicObjectInputForCreate as CompanyCreate,
)
from hubspot.crm.contacts import (
    ApiException as ContactsApiException,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchReadInputSimplePublicObjectId,
    SimplePublicObjectBatchInputForCreate,
    PublicObjectSearchRequest,
    SimplePublicObjectId,
    SimplePublicObjectInputForCreate,
)

CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-client-secret"
REDIRECT = "http://localhost:9/callback"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def authorize_code(base):
    query = urllib.parse.urlencode(
        {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "scope": "oauth crm.objects.contacts.write", "state": "s1"}
    )
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(f"{base}/oauth/authorize?{query}")
    except urllib.error.HTTPError as e:
        assert e.code == 302, e.code
        location = e.headers["Location"]
    else:
        raise AssertionError("authorize did not redirect")
    params = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
    assert params["state"] == ["s1"], params
    return params["code"][0]


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}")


def main(base):
    anon = hubspot.Client.create(host=base)
    code = authorize_code(base)
    tokens = anon.oauth.tokens_api.create(
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    check(tokens.access_token and tokens.refresh_token and tokens.expires_in == 1800, "oauth code exchange")
    refreshed = anon.oauth.tokens_api.create(
        grant_type="refresh_token",
        refresh_token=tokens.refresh_token,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    check(refreshed.access_token != tokens.access_token, "oauth refresh")
    info = anon.oauth.access_tokens_api.get(token=refreshed.access_token)
    check(info.hub_id > 0 and info.user, "access token metadata")
    hub_id = info.hub_id

    client = hubspot.Client.create(access_token=refreshed.access_token, host=base)

    # Account info is not covered by the Python client; call it with the client's own REST layer.
    details = client.api_request({"method": "GET", "path": "/account-info/v3/details", "base_url": base}).json()
    check(details["portalId"] == hub_id, "account info")

    owners = client.crm.owners.owners_api.get_page(limit=1)
    check(len(owners.results) == 1 and owners.paging.next.after, "owners page 1")
    all_owners = client.crm.owners.get_all()
    check(len(all_owners) >= 2, "owners get_all pages to the end")

    props = client.crm.properties.core_api.get_all(object_type="companies")
    industry = next(p for p in props.results if p.name == "industry")
    check(any(o.value == "COMPUTER_SOFTWARE" for o in industry.options), "properties with enumeration options")

    created = client.crm.contacts.basic_api.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={"email": "compat-single@example.com", "firstname": "Single"}
        )
    )
    check(created.id and created.properties["email"] == "compat-single@example.com", "create contact")

    batch = client.crm.contacts.batch_api.create(
        batch_input_simple_public_object_batch_input_for_create=BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                SimplePublicObjectBatchInputForCreate(properties={"email": f"compat{i}@example.com", "lastname": "Compat"})
                for i in range(75)
            ]
        )
    )
    check(len(batch.results) == 75 and batch.status == "COMPLETE", "batch create contacts")

    read = client.crm.contacts.batch_api.read(
        batch_read_input_simple_public_object_id=BatchReadInputSimplePublicObjectId(
            id_property="email",
            properties=["lastname"],
            inputs=[SimplePublicObjectId(id="compat3@example.com"), SimplePublicObjectId(id="missing@example.com")],
        )
    )
    check(len(read.results) == 1 and read.num_errors == 1, "batch read by email with 207")

    found = client.crm.contacts.search_api.do_search(
        public_object_search_request=PublicObjectSearchRequest(
            filter_groups=[{"filters": [{"propertyName": "lastname", "operator": "EQ", "value": "Compat"}]}],
            sorts=[{"propertyName": "email", "direction": "ASCENDING"}],
            properties=["email"],
            limit=50,
        )
    )
    check(found.total == 75 and len(found.results) == 50 and found.paging.next.after == "50", "search contacts")

    everyone = client.crm.contacts.get_all(properties=["email"])
    check(len(everyone) >= 76, "contacts get_all pages to the end")

    try:
        client.crm.contacts.batch_api.create(
            batch_input_simple_public_object_batch_input_for_create=BatchInputSimplePublicObjectBatchInputForCreate(
                inputs=[SimplePublicObjectBatchInputForCreate(properties={"email": "COMPAT1@example.com"})]
            )
        )
    except ContactsApiException as e:
        check(e.status == 409 and "Existing ID" in e.body, "409 surfaces as ApiException")
    else:
        raise AssertionError("duplicate email was accepted")

    company = client.crm.companies.basic_api.create(
        simple_public_object_input_for_create=CompanyCreate(
            properties={"name": "Compat Co", "domain": "compat.example", "industry": "COMPUTER_SOFTWARE"}
        )
    )
    check(company.id, "create company")
    companies = client.crm.companies.batch_api.create(
        batch_input_simple_public_object_batch_input_for_create=CompanyBatchCreate(
            inputs=[CompanyBatchItem(properties={"name": f"Compat {i}", "domain": f"c{i}.compat.example"}) for i in range(3)]
        )
    )
    check(len(companies.results) == 3, "batch create companies")
    page = client.crm.companies.basic_api.get_page(limit=2, properties=["domain"])
    check(len(page.results) == 2 and page.paging.next.after, "companies page")
    print("all checks passed")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"))
