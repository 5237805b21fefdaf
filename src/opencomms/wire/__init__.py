"""Graph v1.0 JSON on the wire: a tolerant reader and a strict writer, shared by the API and (later) the SDK.

Readers turn request bodies into validated, normalised dicts or raise BadRequest naming the field;
writers emit camelCase with `@odata.type` on every nested object.
"""
