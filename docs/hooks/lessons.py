"""mkdocs hook: pull the lessons (lessons/*.md, outside docs_dir) into the site.

Lessons sit beside stages/ at the top of the repo, where a reader of the code
finds them; mkdocs only looks inside docs/. This hook adds each lesson as a
page, anchors pymdownx.snippets at the repo root so the build works from any
folder, and makes `mkdocs serve` rebuild when a lesson or a stage changes.
"""

from pathlib import Path

from mkdocs.structure.files import File


def repo_root(config):
    return Path(config.config_file_path).resolve().parent


def on_config(config):
    # Snippets resolve paths from the current folder by default: anchor them to the repo instead.
    snippets = config.mdx_configs.setdefault("pymdownx.snippets", {})
    snippets["base_path"] = [str(repo_root(config))]
    return config


def on_files(files, config):
    for path in sorted((repo_root(config) / "lessons").glob("*.md")):
        files.append(File.generated(config, f"lessons/{path.name}", abs_src_path=str(path)))
    return files


def on_serve(server, config, builder):
    for folder in ("lessons", "stages"):
        server.watch(str(repo_root(config) / folder))
    return server
