"""How fast the SAE browser's index opens for a large SAE: writes the index of N synthetic features
(default 16384, as a 16k-feature SAE gives) and times, in headless Chromium, from navigation start to the
rendered table (the page's first rows and match count), several times.

    python benchmarks/sae_browser_scale.py --features 16384 --reps 5

Needs Debian's chromium and chromium-driver and the selenium package (the test extra).
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

from tada.report.sae_browser import write_site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=16384)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    rng = random.Random(0)
    concepts = ["tempo", "mood", "piano", "drums", "vocal_gender", "jazz"]
    rows = [{"feature": j, "density": rng.random() * 0.1, "mean_act": rng.random(), "flags": "",
             "top_concept": rng.choice(concepts), "tfidf": rng.random() * 3, "label": rng.choice(concepts),
             "r": round(rng.uniform(-1, 1), 4), "page": f"features/f{j:05d}.html"} for j in range(args.features)]
    folder = Path(tempfile.mkdtemp())
    try:
        index = write_site(folder, "scale", rows, [], 10.0, [0.0], [0.0, 1.0])
        size = (folder / "index-data.js").stat().st_size
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            times = []
            for _ in range(args.reps):
                start = time.perf_counter()
                driver.get(index.as_uri())
                assert driver.find_element(By.ID, "count").text.startswith(f"{args.features} of {args.features}")
                times.append(time.perf_counter() - start)
            shown = len(driver.find_elements(By.CSS_SELECTOR, "#rows tr"))
        finally:
            driver.quit()
    finally:
        shutil.rmtree(folder)
    print(f"{args.features} features, index-data.js {size / 1e6:.2f} MB, {shown} rows rendered")
    print("load to rendered table (s): " + ", ".join(f"{t:.2f}" for t in times) + f"; best {min(times):.2f}")


if __name__ == "__main__":
    main()
