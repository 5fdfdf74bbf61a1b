"""Routing: the index built at config load answers as the old linear matching rules did, and
routing and the bump read image names the same way (one ``normalize_image``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.events import GitPushed, ImagePushed
from handlers.images import same_image
from handlers.routing import Router, normalize_repo
from handlers.settings import EnvironmentConfig, RepoConfig
from service.config import parse_config


def pushed(registry: str, repository: str) -> ImagePushed:
    return ImagePushed(registry=registry, repository=repository, tag="1.0.0", digest="", delivery_id="",
                       source="dockerhub")


def git(repo: str, clone_url: str = "", ref: str = "refs/heads/main") -> GitPushed:
    return GitPushed(repo=repo, ref=ref, before="a" * 40, after="b" * 40, changed_paths=(), pusher="p",
                     delivery_id="d", source="gitea", clone_url=clone_url)


# -- the rules as they were, one linear scan per delivery: the reference the index must agree with --
def _old_matches(candidates: list[str], event: GitPushed) -> bool:
    names = {normalize_repo(c) for c in candidates}
    seen = {normalize_repo(event.repo)} | ({normalize_repo(event.clone_url)} if event.clone_url else set())
    if names & seen:
        return True
    return any(a.endswith("/" + b) or b.endswith("/" + a) for a in names for b in seen)


def old_repo_for(repos: list[RepoConfig], event: GitPushed) -> RepoConfig | None:
    return next((r for r in repos if _old_matches([r.url, *r.match], event)), None)


def old_envs_for_git(envs: list[EnvironmentConfig], event: GitPushed) -> list[EnvironmentConfig]:
    return [e for e in envs if _old_matches([e.git.url], event) and event.ref == f"refs/heads/{e.git.branch}"]


def old_envs_for_image(envs: list[EnvironmentConfig], event: ImagePushed) -> list[EnvironmentConfig]:
    return [e for e in envs if any(same_image(i.image, event.image) for i in e.images)]


REPO_SPELLINGS = [
    "https://git.example.com/Acme/Shop.git", "http://git.example.com/acme/shop", "acme/shop", "Shop",
    "git@git.example.com:acme/shop.git", "ssh://git@git.example.com/acme/shop.git/", "git.example.com/acme/shop",
    "https://other.example.com/acme/shop.git", "acme/shop-deploy", "https://git.example.com/acme/shop-deploy.git",
    "http://127.0.0.1:3000/shipline/shop.git", "shipline/shop", "x/y/z", "https://h/a/b/c.git", "b/c", "c",
]
IMAGE_SPELLINGS = ["nginx", "docker.io/library/nginx", "Index.docker.io/library/nginx", "acme/app",
                   "docker.io/acme/app", "ghcr.io/acme/app", "127.0.0.1:5000/shop/frontend",
                   "127.0.0.1:5000/Shop/Frontend", "registry-1.docker.io/nginx"]


def fleet(repo_names: list[str], env_urls: list[str], images: list[list[str]]) -> tuple[list[RepoConfig],
                                                                                        list[EnvironmentConfig]]:
    repos = [RepoConfig(name=f"r{i}", url=u, match=[REPO_SPELLINGS[(i * 7) % len(REPO_SPELLINGS)]])
             for i, u in enumerate(repo_names)]
    envs = [EnvironmentConfig(name=f"e{i}", git={"url": u, "branch": "main" if i % 3 else "release"},
                              images=[{"image": im} for im in images[i % len(images)]])
            for i, u in enumerate(env_urls)]
    return repos, envs


@settings(max_examples=300, deadline=None)
@given(repo_names=st.lists(st.sampled_from(REPO_SPELLINGS), max_size=8),
       env_urls=st.lists(st.sampled_from(REPO_SPELLINGS), max_size=8),
       images=st.lists(st.lists(st.sampled_from(IMAGE_SPELLINGS), max_size=3), min_size=1, max_size=4),
       sent=st.sampled_from(REPO_SPELLINGS), clone=st.sampled_from(["", *REPO_SPELLINGS]),
       ref=st.sampled_from(["refs/heads/main", "refs/heads/release", "refs/tags/1.0.0"]),
       image=st.sampled_from(IMAGE_SPELLINGS))
def test_the_index_agrees_with_the_linear_rules(repo_names, env_urls, images, sent, clone, ref, image) -> None:
    repos, envs = fleet(repo_names, env_urls, images)
    router = Router(repos, envs)
    event = git(sent, clone, ref)
    assert router.repo_for(event) == old_repo_for(repos, event)
    assert router.envs_for_git(event) == old_envs_for_git(envs, event)
    registry, _, repository = image.rpartition("/") if image.count("/") > 1 or "." in image.split("/")[0] \
        else ("", "", image)
    img = pushed(registry, repository) if registry else ImagePushed(
        registry="", repository=image, tag="1", digest="", delivery_id="", source="generic")
    assert router.envs_for_image(img) == old_envs_for_image(envs, img)


@pytest.mark.parametrize(("sent", "clone", "expected"), [
    ("acme/shop", "", "shop"), ("Acme/Shop", "", "shop"),
    ("other/thing", "https://git.example.com/acme/shop.git", "shop"),
    ("git.example.com/acme/shop", "", "shop"), ("acme/shop-deploy", "", None), ("nobody/else", "", None),
])
def test_url_forms_case_and_git_suffix_find_the_repo(sent: str, clone: str, expected: str | None) -> None:
    router = Router([RepoConfig(name="shop", url="https://git.example.com/acme/shop.git")], [])
    found = router.repo_for(git(sent, clone))
    assert (found.name if found else None) == expected


def test_docker_hub_spellings_and_case_route_to_the_same_environment() -> None:
    config = parse_config({"environments": [{"name": "staging", "git": {"url": "http://127.0.0.1:1/m.git"},
                                             "images": [{"image": "docker.io/library/nginx"}]}]})
    for registry, repository in (("docker.io", "library/nginx"), ("index.docker.io", "library/nginx"),
                                 ("registry-1.docker.io", "nginx"), ("Docker.io", "library/nginx")):
        assert [e.name for e in config.router.envs_for_image(pushed(registry, repository))] == ["staging"]
    assert "not configured" in config.router.ignore_reason(pushed("ghcr.io", "library/nginx"))
